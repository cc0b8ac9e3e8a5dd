// Package gcloud drives the real gcloud CLI (Google Cloud SDK, on PATH)
// against a real `usher serve`, configured as DESIGN.md §5 describes, and
// checks both what gcloud reports and the effect through Usher's gateway.
//
// It skips (loudly) only when gcloud is not on PATH. With
// USHER_GCLOUD_TRACE=1 and -v it logs every command and its output.
package gcloud

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
)

const (
	helloService = "my-hello-world-service"
	helloBody    = "Hello World!"
)

// TestGcloudRunServices covers deploy (the seed's commands, flags, public and
// private), list, describe, update, revisions, a failing deploy and delete,
// on one server, in order.
func TestGcloudRunServices(t *testing.T) {
	e := newEnv(t)
	var url string

	step(t, "1 seed: deploy", func(t *testing.T) {
		// The seed's exact command; no --quiet: CLOUDSDK_CORE_DISABLE_PROMPTS
		// answers the "Allow unauthenticated invocations" prompt with its
		// default (No).
		r := e.gcloud("run", "deploy", helloService, "--image=file://"+helloBin, "--region="+region)
		if r.code != 0 {
			t.Fatalf("%s\nwant exit 0", r)
		}
		if want := "Service URL: http://" + helloService + "-"; !strings.Contains(r.out(), want) {
			t.Errorf("%s\nwant the output to contain %q", r, want)
		}
		url = e.describe(helloService).Status.URL
		if !strings.HasPrefix(url, "http://"+helloService+"-") || !strings.Contains(r.out(), "Service URL: "+url) {
			t.Errorf("status.url %q: want http://%s-… and named by deploy's output:\n%s", url, helloService, r.out())
		}
		e.expectGet(t, "new service without a flag is private", url, 401, "")
	})

	t.Run("1 seed: allUsers on and off", func(t *testing.T) {
		e.mustGcloud("run", "services", "add-iam-policy-binding", helloService,
			"--member=allUsers", "--role="+invokerRole, "--region="+region, "--platform=managed")
		e.expectGet(t, "after allUsers binding", url, 200, helloBody)

		e.mustGcloud("run", "services", "remove-iam-policy-binding", helloService,
			"--member=allUsers", "--role="+invokerRole, "--region="+region, "--platform=managed")
		e.expectGet(t, "after removing allUsers", url, 401, "")
	})

	t.Run("2 redeploy: env vars, public and private, invoker IAM check", func(t *testing.T) {
		before := e.describe(helloService).Status.LatestReadyRevisionName
		e.deploy(helloService, helloBin, "--update-env-vars=NAME=Usher")
		after := e.describe(helloService)
		if after.Status.LatestReadyRevisionName == "" || after.Status.LatestReadyRevisionName == before {
			t.Errorf("latestReadyRevisionName after --update-env-vars: got %q, was %q: want a new revision",
				after.Status.LatestReadyRevisionName, before)
		}
		if got := after.envMap()["NAME"]; got != "Usher" {
			t.Errorf("env NAME: got %q, want Usher", got)
		}
		e.expectGet(t, "private after an env deploy", url, 401, "")
		tok := strings.TrimSpace(e.mustUsher("auth", "print-identity-token", "--audiences", url).stdout)
		e.expectGet(t, "owner's identity token", url, 200, "Hello Usher!", "Authorization", bearer(tok))

		e.deploy(helloService, helloBin, "--allow-unauthenticated")
		e.expectGet(t, "after deploy --allow-unauthenticated", url, 200, "Hello Usher!")
		if p := e.servicePolicy(t, helloService); !p.has(invokerRole, "allUsers") {
			t.Errorf("policy after --allow-unauthenticated: got %+v, want allUsers as %s", p, invokerRole)
		}

		e.deploy(helloService, helloBin, "--no-allow-unauthenticated")
		e.expectGet(t, "after deploy --no-allow-unauthenticated", url, 401, "")

		e.deploy(helloService, helloBin, "--no-invoker-iam-check")
		e.expectGet(t, "after deploy --no-invoker-iam-check", url, 200, "Hello Usher!")
		s := e.describe(helloService)
		if got := s.Metadata.Annotations["run.googleapis.com/invoker-iam-disabled"]; !strings.EqualFold(got, "true") {
			t.Errorf("annotation run.googleapis.com/invoker-iam-disabled: got %q, want True", got)
		}
		if p := e.servicePolicy(t, helloService); p.has(invokerRole, "allUsers") {
			t.Errorf("policy after --no-invoker-iam-check: got %+v, want no allUsers binding", p)
		}

		e.deploy(helloService, helloBin, "--invoker-iam-check")
		e.expectGet(t, "after deploy --invoker-iam-check", url, 401, "")
	})

	t.Run("2 deploy flags land in the service", func(t *testing.T) {
		e.mustGcloud("iam", "service-accounts", "create", "runner")
		runner := saEmail("runner")
		// --command/--args run the image through env(1), which proves both
		// reach the instance: the app then says hello to Cmd.
		furl := e.deploy("flags-svc", helloBin,
			"--set-env-vars=NAME=Flags,A=1,B=2",
			"--command=/usr/bin/env", "--args=NAME=Cmd,"+helloBin,
			"--concurrency=7", "--min-instances=1", "--max-instances=3",
			"--service-account="+runner, "--allow-unauthenticated")
		s := e.describe("flags-svc")
		tpl := s.Spec.Template
		if len(tpl.Spec.Containers) != 1 {
			t.Fatalf("containers: got %+v, want one", tpl.Spec.Containers)
		}
		c := tpl.Spec.Containers[0]
		if got, want := s.envMap(), map[string]string{"NAME": "Flags", "A": "1", "B": "2"}; !sameMap(got, want) {
			t.Errorf("env: got %v, want %v", got, want)
		}
		if strings.Join(c.Command, " ") != "/usr/bin/env" || strings.Join(c.Args, " ") != "NAME=Cmd "+helloBin {
			t.Errorf("command, args: got %q %q, want [/usr/bin/env] [NAME=Cmd %s]", c.Command, c.Args, helloBin)
		}
		if cc := tpl.Spec.ContainerConcurrency; cc == nil || *cc != 7 {
			t.Errorf("containerConcurrency: got %v, want 7", cc)
		}
		if a := tpl.Metadata.Annotations; a["autoscaling.knative.dev/minScale"] != "1" || a["autoscaling.knative.dev/maxScale"] != "3" {
			t.Errorf("template annotations: got minScale %q maxScale %q, want 1 and 3",
				a["autoscaling.knative.dev/minScale"], a["autoscaling.knative.dev/maxScale"])
		}
		if tpl.Spec.ServiceAccountName != runner {
			t.Errorf("serviceAccountName: got %q, want %s", tpl.Spec.ServiceAccountName, runner)
		}
		e.expectGet(t, "flags-svc via --command/--args", furl, 200, "Hello Cmd!")

		e.deploy("flags-svc", helloBin, "--remove-env-vars=A", "--concurrency=default", "--max-instances=default")
		s = e.describe("flags-svc")
		if got, want := s.envMap(), map[string]string{"NAME": "Flags", "B": "2"}; !sameMap(got, want) {
			t.Errorf("env after --remove-env-vars=A: got %v, want %v", got, want)
		}
		if cc := s.Spec.Template.Spec.ContainerConcurrency; cc != nil && *cc == 7 {
			t.Errorf("containerConcurrency after --concurrency=default: got 7, want it reset")
		}
		if got, ok := s.Spec.Template.Metadata.Annotations["autoscaling.knative.dev/maxScale"]; ok {
			t.Errorf("maxScale after --max-instances=default: got %q, want it removed", got)
		}
		if s.Spec.Template.Spec.ServiceAccountName != runner {
			t.Errorf("serviceAccountName after an unrelated deploy: got %q, want %s kept", s.Spec.Template.Spec.ServiceAccountName, runner)
		}
		e.expectGet(t, "flags-svc after redeploy", furl, 200, "Hello Cmd!")
	})

	t.Run("3 list, describe, update, revisions", func(t *testing.T) {
		for _, args := range [][]string{
			{"run", "services", "list", "--region=" + region},
			{"run", "services", "list"},
		} {
			r := e.mustGcloud(args...)
			if !listed(r.stdout, helloService, "✔", url) {
				t.Errorf("%s\nwant a row with ✔, %s and %s", r, helloService, url)
			}
		}

		s := e.describe(helloService)
		r := e.mustGcloud("run", "services", "describe", helloService, "--region="+region)
		if !strings.Contains(r.stdout, "URL:") || !strings.Contains(r.stdout, url) || !strings.Contains(r.stdout, s.Status.LatestReadyRevisionName) {
			t.Errorf("%s\nwant \"URL:\", %s and revision %s", r, url, s.Status.LatestReadyRevisionName)
		}

		r = e.mustGcloud("run", "services", "describe", helloService, "--region="+region, "--format=value(status.url)")
		if r.stdout != url+"\n" {
			t.Errorf("describe --format=value(status.url): got %q, want %q", r.stdout, url+"\n")
		}

		r = e.gcloud("run", "services", "update", helloService, "--update-env-vars=X=1", "--region="+region)
		if r.code != 0 {
			t.Errorf("%s\nwant exit 0", r)
		}
		s2 := e.describe(helloService)
		if got := s2.envMap(); got["X"] != "1" || got["NAME"] != "Usher" {
			t.Errorf("env after services update --update-env-vars=X=1: got %v, want X=1 and NAME=Usher", got)
		}
		if s2.Status.LatestReadyRevisionName == s.Status.LatestReadyRevisionName {
			t.Errorf("services update made no new ready revision (still %s)", s2.Status.LatestReadyRevisionName)
		}
		if c := s2.Spec.Template.Spec.Containers; len(c) != 1 || c[0].Image != "file://"+helloBin {
			t.Errorf("image after services update: got %+v, want file://%s kept", c, helloBin)
		}

		r = e.mustGcloud("run", "revisions", "list", "--service="+helloService, "--region="+region)
		revs := regexp.MustCompile(regexp.QuoteMeta(helloService)+`-\d{5}-\w+`).FindAllString(r.stdout, -1)
		if len(uniq(revs)) < 2 {
			t.Errorf("%s\nwant at least 2 revisions listed", r)
		}
		if !listed(r.stdout, "✔", s2.Status.LatestReadyRevisionName, "yes", helloService) {
			t.Errorf("%s\nwant the latest revision %s listed as ready (✔) and active (yes)", r, s2.Status.LatestReadyRevisionName)
		}

		r = e.mustGcloud("run", "revisions", "describe", s2.Status.LatestReadyRevisionName, "--region="+region)
		if !strings.Contains(r.out(), "Revision "+s2.Status.LatestReadyRevisionName) || !strings.Contains(r.out(), "X") {
			t.Errorf("%s\nwant \"Revision %s\" and the env var X", r, s2.Status.LatestReadyRevisionName)
		}
	})

	t.Run("7 new service without --[no-]allow-unauthenticated is private", func(t *testing.T) {
		// gcloud asks testIamPermissions on the not-yet-existing service, then
		// (prompts disabled) answers No to "Allow unauthenticated".
		r := e.gcloud("run", "deploy", "quiet-svc", "--image=file://"+helloBin, "--region="+region, "--quiet")
		if r.code != 0 {
			t.Fatalf("%s\nwant exit 0", r)
		}
		u := e.describe("quiet-svc").Status.URL
		e.expectGet(t, "quiet-svc", u, 401, "")
		if p := e.servicePolicy(t, "quiet-svc"); p.has(invokerRole, "allUsers") {
			t.Errorf("quiet-svc policy: got %+v, want no allUsers", p)
		}
	})

	t.Run("8 an instance that cannot start fails the deploy, old revision serves", func(t *testing.T) {
		e.mustGcloud("run", "services", "add-iam-policy-binding", helloService,
			"--member=allUsers", "--role="+invokerRole, "--region="+region)
		before := e.describe(helloService).Status.LatestReadyRevisionName
		e.expectGet(t, "before the failing deploy", url, 200, "Hello Usher!")

		r := e.gcloud("run", "deploy", helloService, "--image=file:///bin/false", "--region="+region, "--quiet")
		if r.code == 0 {
			t.Errorf("%s\nwant a non-zero exit", r)
		}
		var full struct {
			Status struct {
				LatestReadyRevisionName string `json:"latestReadyRevisionName"`
				Conditions              []struct {
					Type, Status, Message string
				} `json:"conditions"`
			} `json:"status"`
		}
		d := e.mustGcloud("run", "services", "describe", helloService, "--region="+region, "--format=json")
		if err := json.Unmarshal([]byte(d.stdout), &full); err != nil {
			t.Fatal(err)
		}
		var msg string
		for _, c := range full.Status.Conditions {
			if c.Type == "Ready" {
				if c.Status != "False" {
					t.Errorf("Ready after the failing deploy: got %q, want False", c.Status)
				}
				msg = c.Message
			}
		}
		if msg == "" {
			t.Errorf("Ready condition has no message after the failing deploy: %s", d.stdout)
		} else if !strings.Contains(r.out(), "ERROR: (gcloud.run.deploy) "+firstLine(msg)) {
			t.Errorf("%s\nwant \"ERROR: (gcloud.run.deploy) %s\"", r, firstLine(msg))
		}
		if full.Status.LatestReadyRevisionName != before {
			t.Errorf("latestReadyRevisionName: got %q, want %q kept", full.Status.LatestReadyRevisionName, before)
		}
		e.expectGet(t, "previous revision after the failing deploy", url, 200, "Hello Usher!")
		// Ready False with an older ready revision still serving: "!".
		r = e.mustGcloud("run", "services", "list", "--region="+region)
		if !listed(r.stdout, "!", helloService) {
			t.Errorf("%s\nwant %s listed with !", r, helloService)
		}

		r = e.gcloud("run", "deploy", "never-ready", "--image=file:///bin/false", "--region="+region, "--quiet")
		if r.code == 0 || !strings.Contains(r.out(), "ERROR: (gcloud.run.deploy)") {
			t.Errorf("%s\nwant a non-zero exit and an ERROR line for a new service that cannot start", r)
		}
	})

	t.Run("3 delete", func(t *testing.T) {
		r := e.gcloud("run", "services", "delete", helloService, "--region="+region, "--quiet")
		if r.code != 0 {
			t.Fatalf("%s\nwant exit 0", r)
		}
		e.expectGet(t, "after delete", url, 404, "")
		r = e.gcloud("run", "services", "describe", helloService, "--region="+region)
		if r.code == 0 || !strings.Contains(r.out(), "Cannot find service ["+helloService+"]") {
			t.Errorf("%s\nwant a non-zero exit and \"Cannot find service [%s]\"", r, helloService)
		}
	})
}

// servicePolicy is `gcloud run services get-iam-policy NAME --format=json`.
func (e *env) servicePolicy(t *testing.T, name string) policy {
	t.Helper()
	return parsePolicy(t, e.mustGcloud("run", "services", "get-iam-policy", name, "--region="+region, "--format=json"))
}

// listed reports whether a line of a `services list` table has all fields.
func listed(table string, fields ...string) bool {
	for _, line := range strings.Split(table, "\n") {
		ok := true
		for _, f := range fields {
			ok = ok && strings.Contains(line, f)
		}
		if ok {
			return true
		}
	}
	return false
}

func sameMap(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func uniq(s []string) map[string]bool {
	m := map[string]bool{}
	for _, v := range s {
		m[v] = true
	}
	return m
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
