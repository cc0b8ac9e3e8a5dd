package e2e

import (
	"context"
	"crypto/x509"
	"os"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/iam/apiv1/iampb"
	iamcreds "cloud.google.com/go/iam/credentials/apiv1"
	"cloud.google.com/go/iam/credentials/apiv1/credentialspb"
	run "cloud.google.com/go/run/apiv2"
	"cloud.google.com/go/run/apiv2/runpb"
	"golang.org/x/oauth2"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpccreds "google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/usher-run/usher/internal/testsupport/usherproc"
)

// TestGRPCAdminAPI: Google's default Go clients (gRPC) work against Usher
// with option.WithEndpoint and an access token: run.NewServicesClient
// creates, reads, lists and deletes a service and edits its IAM policy
// (waiting on the operations), credentials.NewIamCredentialsClient mints
// tokens; a caller without the permission gets PermissionDenied, one
// without a token Unauthenticated — the REST API's own decisions.
func TestGRPCAdminAPI(t *testing.T) {
	cert, key := selfSigned(t)
	p := usherproc.Start(t, usherproc.Options{Bin: usherBin, Dir: t.TempDir(), CAFile: cert,
		Args: []string{"--tls-cert", cert, "--tls-key", key}})
	s := &server{Server: p, t: t, dir: p.Dir, dataDir: p.DataDir, home: p.Home, logPath: p.LogPath, config: p.ConfigPath, http: p.HTTP}
	pem, err := os.ReadFile(cert)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	endpoint := "localhost:" + s.port(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	opts := func(token string) []option.ClientOption {
		o := []option.ClientOption{option.WithEndpoint(endpoint),
			option.WithGRPCDialOption(grpc.WithTransportCredentials(grpccreds.NewClientTLSFromCert(roots, "localhost")))}
		if token == "" {
			return append(o, option.WithoutAuthentication())
		}
		return append(o, option.WithTokenSource(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: token})))
	}
	owner := s.accessToken(t)
	sc, err := run.NewServicesClient(ctx, opts(owner)...)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	parent := "projects/" + project + "/locations/" + region

	op, err := sc.CreateService(ctx, &runpb.CreateServiceRequest{Parent: parent, ServiceId: "grpc-made", Service: &runpb.Service{
		Template: &runpb.RevisionTemplate{Containers: []*runpb.Container{{Image: "file://" + helloBin}}},
	}})
	if err != nil {
		t.Fatalf("CreateService: %v", err)
	}
	svc, err := op.Wait(ctx)
	if err != nil {
		t.Fatalf("CreateService's operation: %v", err)
	}
	if svc.GetName() != parent+"/services/grpc-made" || !strings.HasPrefix(svc.GetUri(), "https://") {
		t.Errorf("created %q at %q", svc.GetName(), svc.GetUri())
	}
	got, err := sc.GetService(ctx, &runpb.GetServiceRequest{Name: parent + "/services/grpc-made"})
	if err != nil || got.GetTemplate().GetContainers()[0].GetImage() != "file://"+helloBin {
		t.Fatalf("GetService: %v, %v", got, err)
	}
	it := sc.ListServices(ctx, &runpb.ListServicesRequest{Parent: parent})
	found := false
	for {
		x, err := it.Next()
		if err == iterator.Done {
			break
		}
		if err != nil {
			t.Fatalf("ListServices: %v", err)
		}
		found = found || x.GetName() == svc.GetName()
	}
	if !found {
		t.Error("ListServices lacks the service")
	}
	if _, err := sc.GetService(ctx, &runpb.GetServiceRequest{Name: parent + "/services/nosuch"}); status.Code(err) != codes.NotFound {
		t.Errorf("GetService of a missing service: %v, want NotFound", err)
	}

	// IAM: the seed's grant, over gRPC; then the service is public.
	pol, err := sc.GetIamPolicy(ctx, &iampb.GetIamPolicyRequest{Resource: svc.GetName()})
	if err != nil {
		t.Fatalf("GetIamPolicy: %v", err)
	}
	pol.Bindings = append(pol.Bindings, &iampb.Binding{Role: "roles/run.invoker", Members: []string{"allUsers"}})
	if _, err := sc.SetIamPolicy(ctx, &iampb.SetIamPolicyRequest{Resource: svc.GetName(), Policy: pol}); err != nil {
		t.Fatalf("SetIamPolicy: %v", err)
	}
	if r := s.get(t, svc.GetUri()+"/"); r.status != 200 || !strings.Contains(r.body, "Hello World!") {
		t.Errorf("after the grant over gRPC: %d %q", r.status, r.body)
	}
	// A stale etag is refused, as on REST.
	if _, err := sc.SetIamPolicy(ctx, &iampb.SetIamPolicyRequest{Resource: svc.GetName(), Policy: pol}); status.Code(err) != codes.Aborted {
		t.Errorf("SetIamPolicy with a stale etag: %v, want Aborted", err)
	}

	// IAM credentials over gRPC.
	sa := s.createSA(t, "grpc-sa")
	cc, err := iamcreds.NewIamCredentialsClient(ctx, opts(owner)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	idt, err := cc.GenerateIdToken(ctx, &credentialspb.GenerateIdTokenRequest{Name: "projects/-/serviceAccounts/" + sa, Audience: svc.GetUri(), IncludeEmail: true})
	if err != nil || strings.Count(idt.GetToken(), ".") != 2 {
		t.Fatalf("GenerateIdToken: %v, %v", idt, err)
	}
	at, err := cc.GenerateAccessToken(ctx, &credentialspb.GenerateAccessTokenRequest{Name: "projects/-/serviceAccounts/" + sa, Scope: []string{"https://www.googleapis.com/auth/cloud-platform"}})
	if err != nil || at.GetAccessToken() == "" {
		t.Fatalf("GenerateAccessToken: %v, %v", at, err)
	}

	// The attacker's view: the service account may not read the service,
	// nobody may call without a token, and a forged token is no token.
	asSA, err := run.NewServicesClient(ctx, opts(at.GetAccessToken())...)
	if err != nil {
		t.Fatal(err)
	}
	defer asSA.Close()
	if _, err := asSA.GetService(ctx, &runpb.GetServiceRequest{Name: svc.GetName()}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("GetService as a principal without run.services.get: %v, want PermissionDenied", err)
	}
	if _, err := asSA.DeleteService(ctx, &runpb.DeleteServiceRequest{Name: svc.GetName()}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("DeleteService as a principal without run.services.delete: %v, want PermissionDenied", err)
	}
	for name, tok := range map[string]string{"no token": "", "a forged token": owner[:len(owner)-4] + "AAAA", "an identity token": idt.GetToken()} {
		c, err := run.NewServicesClient(ctx, opts(tok)...)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.GetService(ctx, &runpb.GetServiceRequest{Name: svc.GetName()}); status.Code(err) != codes.Unauthenticated {
			t.Errorf("GetService with %s: %v, want Unauthenticated", name, err)
		}
		c.Close()
	}
	if _, err := sc.GetService(ctx, &runpb.GetServiceRequest{Name: parent + "/services/../../../v1/projects/" + project}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("GetService of a climbing name: %v, want InvalidArgument", err)
	}

	del, err := sc.DeleteService(ctx, &runpb.DeleteServiceRequest{Name: svc.GetName()})
	if err != nil {
		t.Fatalf("DeleteService: %v", err)
	}
	if _, err := del.Wait(ctx); err != nil {
		t.Fatalf("DeleteService's operation: %v", err)
	}
	if r := s.get(t, svc.GetUri()+"/"); r.status != 404 {
		t.Errorf("deleted service answers %d", r.status)
	}
}
