package gcloud

import "testing"

// TestGcloudIAP: gcloud's --iap and `iap web` commands work unchanged: the
// service goes behind the identity-aware proxy (a browser is sent to sign
// in), gcloud grants the IAP service agent the invoker role, and
// `gcloud beta iap web add-iam-policy-binding --resource-type=cloud-run`
// grants a person access; --no-iap takes the service out again.
func TestGcloudIAP(t *testing.T) {
	e := newEnv(t)
	r := e.mustGcloud("beta", "run", "deploy", "iap-svc", "--image=file://"+helloBin, "--region="+region, "--quiet", "--iap", "--no-allow-unauthenticated")
	m := serviceURLLine.FindStringSubmatch(r.out())
	if m == nil {
		t.Fatalf("%s\nwant a Service URL line", r)
	}
	u := m[1]
	status, _ := e.get(u, "Accept", "text/html")
	if status != 302 {
		t.Errorf("a browser without a session: got %d, want 302 to sign in", status)
	}
	pol := parsePolicy(t, e.mustGcloud("run", "services", "get-iam-policy", "iap-svc", "--region="+region, "--format=json"))
	if !pol.has(invokerRole, "serviceAccount:service-"+project+"@gcp-sa-iap.iam.gserviceaccount.com") {
		t.Errorf("policy after --iap: got %+v, want the IAP service agent as invoker", pol)
	}
	e.mustGcloud("beta", "iap", "web", "add-iam-policy-binding", "--resource-type=cloud-run", "--service=iap-svc", "--region="+region,
		"--member=user:alice@example.com", "--role=roles/iap.httpsResourceAccessor", "--condition=None")
	r = e.mustGcloud("beta", "iap", "web", "get-iam-policy", "--resource-type=cloud-run", "--service=iap-svc", "--region="+region, "--format=json")
	if !parsePolicy(t, r).has("roles/iap.httpsResourceAccessor", "user:alice@example.com") {
		t.Errorf("%s\nwant alice as accessor", r)
	}
	e.mustGcloud("beta", "run", "services", "update", "iap-svc", "--region="+region, "--no-iap", "--quiet")
	if status, _ := e.get(u, "Accept", "text/html"); status != 401 {
		t.Errorf("after --no-iap, a browser without credentials: got %d, want 401", status)
	}
}
