package api_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/client"
)

// fieldCase sets one v1 field (or annotation) on an otherwise plain service.
type fieldCase struct {
	path  string // as apis.V1FieldPaths writes it; [] is the first element
	value any
	want  string // "kept": describe shows it back; "refused": 400 naming path ("refused: P" naming P); "accepted": create succeeds
}

// v1FieldCases covers every field apis.V1FieldPaths lists that a client
// may set (TestEveryV1FieldKeptOrRefused fails when one is missing).
var v1FieldCases = []fieldCase{
	{"apiVersion", "serving.knative.dev/v1", "kept"},
	{"kind", "Service", "kept"},
	{"metadata.name", "NAME", "kept"},
	{"metadata.namespace", project, "kept"},
	{"metadata.labels", map[string]any{"team": "a"}, "kept"},
	{"metadata.annotations", map[string]any{"example.com/owner": "a"}, "kept"},
	{"metadata.generateName", "x-", "refused"},
	{"metadata.ownerReferences", []any{map[string]any{"name": "x"}}, "refused"},
	{"metadata.finalizers", []any{"x"}, "refused"},
	{"spec.template.metadata.name", "NAME-rev1", "kept"},
	{"spec.template.metadata.labels", map[string]any{"team": "a"}, "kept"},
	{"spec.template.metadata.annotations", map[string]any{"example.com/owner": "a"}, "kept"},
	{"spec.template.metadata.generateName", "x-", "refused"},
	{"spec.template.metadata.ownerReferences", []any{map[string]any{"name": "x"}}, "refused"},
	{"spec.template.metadata.finalizers", []any{"x"}, "refused"},
	{"spec.template.metadata.namespace", project, "kept"},
	{"spec.template.metadata.resourceVersion", "7", "kept"},
	{"spec.template.spec.containerConcurrency", 7.0, "kept"},
	{"spec.template.spec.timeoutSeconds", 42.0, "kept"},
	{"spec.template.spec.serviceAccountName", apis.DefaultServiceAccount(project), "kept"},
	{"spec.template.spec.volumes", []any{map[string]any{"name": "v", "emptyDir": map[string]any{}}}, "refused"},
	{"spec.template.spec.imagePullSecrets", []any{map[string]any{"name": "x"}}, "refused"},
	{"spec.template.spec.nodeSelector", map[string]any{"run.googleapis.com/accelerator": "nvidia-l4"}, "refused"},
	{"spec.template.spec.runtimeClassName", "gvisor", "refused"},
	{"spec.template.spec.enableServiceLinks", true, "refused"},
	{"spec.template.spec.containers[].name", "app", "kept"},
	{"spec.template.spec.containers[].image", "file:///bin/sleep", "kept"},
	{"spec.template.spec.containers[].command", []any{"/bin/sh"}, "kept"},
	{"spec.template.spec.containers[].args", []any{"-c", "true"}, "kept"},
	{"spec.template.spec.containers[].env[].name", "OTHER", "kept"},
	{"spec.template.spec.containers[].env[].value", "v", "kept"},
	// valueFrom cases start from env[0] = {name, valueFrom: s:latest}, a
	// secret the harness made that the runtime account may read.
	{"spec.template.spec.containers[].env[].valueFrom", map[string]any{"secretKeyRef": map[string]any{"name": "s", "key": "1"}}, "kept"},
	{"spec.template.spec.containers[].env[].valueFrom.secretKeyRef.name", "s", "kept"},
	{"spec.template.spec.containers[].env[].valueFrom.secretKeyRef.name", "projects/other/secrets/s", "refused"},
	{"spec.template.spec.containers[].env[].valueFrom.secretKeyRef.key", "latest", "kept"},
	{"spec.template.spec.containers[].env[].valueFrom.secretKeyRef.key", "newest", "refused"},
	{"spec.template.spec.containers[].env[].valueFrom.configMapKeyRef", map[string]any{"name": "c", "key": "k"}, "refused"},
	{"spec.template.spec.containers[].ports[].name", "http1", "kept"},
	{"spec.template.spec.containers[].ports[].name", "h2c", "kept"},
	{"spec.template.spec.containers[].ports[].name", "h3", "refused"},
	{"spec.template.spec.containers[].ports[].containerPort", 9000.0, "kept"},
	{"spec.template.spec.containers[].ports[].protocol", "UDP", "refused"},
	{"spec.template.spec.containers[].resources.limits", map[string]any{"cpu": "1", "memory": "256Mi"}, "kept"},
	{"spec.template.spec.containers[].resources.limits", map[string]any{"nvidia.com/gpu": "1"}, "refused"},
	{"spec.template.spec.containers[].resources.requests", map[string]any{"cpu": "1"}, "refused"},
	{"spec.template.spec.containers[].startupProbe.tcpSocket.port", 8080.0, "kept"},
	{"spec.template.spec.containers[].startupProbe.tcpSocket.port", 9999.0, "refused"},
	{"spec.template.spec.containers[].startupProbe.initialDelaySeconds", 1.0, "kept"},
	{"spec.template.spec.containers[].startupProbe.timeoutSeconds", 240.0, "kept"},
	{"spec.template.spec.containers[].startupProbe.periodSeconds", 240.0, "kept"},
	{"spec.template.spec.containers[].startupProbe.failureThreshold", 1.0, "kept"},
	{"spec.template.spec.containers[].startupProbe.successThreshold", 1.0, "kept"},
	{"spec.template.spec.containers[].startupProbe.httpGet.path", "/ready", "kept"},
	{"spec.template.spec.containers[].startupProbe.httpGet.path", "ready", "refused"},
	{"spec.template.spec.containers[].startupProbe.httpGet.port", 8080.0, "kept"},
	{"spec.template.spec.containers[].startupProbe.httpGet.port", 9999.0, "refused"},
	{"spec.template.spec.containers[].startupProbe.httpGet.httpHeaders", []any{map[string]any{"name": "a", "value": "b"}}, "refused"},
	{"spec.template.spec.containers[].startupProbe.grpc.port", 8080.0, "kept"},
	{"spec.template.spec.containers[].startupProbe.grpc.port", 9999.0, "refused"},
	{"spec.template.spec.containers[].startupProbe.grpc.service", "api.v1.Greeter", "kept"},
	{"spec.template.spec.containers[].startupProbe.exec", map[string]any{"command": []any{"true"}}, "refused"},
	// Liveness cases other than httpGet's start from a tcpSocket probe
	// (withLiveness): a liveness probe needs an action.
	{"spec.template.spec.containers[].livenessProbe.tcpSocket.port", 8080.0, "kept"},
	{"spec.template.spec.containers[].livenessProbe.tcpSocket.port", 9999.0, "refused"},
	{"spec.template.spec.containers[].livenessProbe.httpGet.path", "/healthz", "kept"},
	{"spec.template.spec.containers[].livenessProbe.httpGet.port", 8080.0, "kept"},
	{"spec.template.spec.containers[].livenessProbe.httpGet.httpHeaders", []any{map[string]any{"name": "a", "value": "b"}}, "refused"},
	{"spec.template.spec.containers[].livenessProbe.initialDelaySeconds", 1.0, "kept"},
	{"spec.template.spec.containers[].livenessProbe.timeoutSeconds", 1.0, "kept"},
	{"spec.template.spec.containers[].livenessProbe.periodSeconds", 5.0, "kept"},
	{"spec.template.spec.containers[].livenessProbe.periodSeconds", -1.0, "refused"},
	{"spec.template.spec.containers[].livenessProbe.failureThreshold", 3.0, "kept"},
	{"spec.template.spec.containers[].livenessProbe.successThreshold", 1.0, "kept"},
	{"spec.template.spec.containers[].livenessProbe.grpc.port", 8080.0, "kept"},
	{"spec.template.spec.containers[].livenessProbe.grpc.port", 9999.0, "refused"},
	{"spec.template.spec.containers[].livenessProbe.grpc.service", "api.v1.Greeter", "kept"},
	{"spec.template.spec.containers[].livenessProbe.exec", map[string]any{"command": []any{"true"}}, "refused"},
	{"spec.template.spec.containers[].readinessProbe", map[string]any{"tcpSocket": map[string]any{}}, "refused"},
	{"spec.template.spec.containers[].workingDir", "/srv", "kept"},
	{"spec.template.spec.containers[].workingDir", "srv", "refused"},
	{"spec.template.spec.containers[].workingDir", "/srv/../etc", "refused"},
	// Volume cases start from a valid in-memory volume "v" mounted at
	// /tmp/v (withVolume), then change one field.
	{"spec.template.spec.volumes[].name", "v", "kept"},
	{"spec.template.spec.volumes[].emptyDir.medium", "Memory", "kept"},
	{"spec.template.spec.volumes[].emptyDir.medium", "Disk", "refused"},
	{"spec.template.spec.volumes[].emptyDir.sizeLimit", "64Mi", "kept"},
	{"spec.template.spec.volumes[].emptyDir.sizeLimit", "lots", "refused"},
	// secret cases start from volumes[0] = {name v, secret {secretName s}},
	// the secret the harness made, which the runtime account may read.
	{"spec.template.spec.volumes[].secret", map[string]any{"secretName": "s", "items": []any{map[string]any{"key": "1", "path": "f"}}}, "kept"},
	{"spec.template.spec.volumes[].secret.secretName", "s", "kept"},
	{"spec.template.spec.volumes[].secret.secretName", "projects/other/secrets/s", "refused"},
	{"spec.template.spec.volumes[].secret.items[].key", "latest", "kept"},
	{"spec.template.spec.volumes[].secret.items[].path", "token", "kept"},
	{"spec.template.spec.volumes[].secret.items[].path", "../token", "refused"},
	{"spec.template.spec.volumes[].secret.items[].mode", 256.0, "kept"},
	{"spec.template.spec.volumes[].secret.items[].mode", 4096.0, "refused"},
	{"spec.template.spec.volumes[].secret.defaultMode", 288.0, "kept"},
	{"spec.template.spec.volumes[].secret.optional", true, "refused"},
	{"spec.template.spec.volumes[].configMap", map[string]any{"name": "c"}, "refused"},
	{"spec.template.spec.volumes[].csi", map[string]any{"driver": "gcsfuse.run.googleapis.com"}, "refused"},
	{"spec.template.spec.volumes[].nfs", map[string]any{"server": "s", "path": "/"}, "refused"},
	{"spec.template.spec.containers[].volumeMounts[].name", "v", "kept"},
	{"spec.template.spec.containers[].volumeMounts[].name", "w", "refused"}, // no such volume
	{"spec.template.spec.containers[].volumeMounts[].mountPath", "/tmp/cache", "kept"},
	{"spec.template.spec.containers[].volumeMounts[].mountPath", "cache", "refused"},
	{"spec.template.spec.containers[].volumeMounts[].mountPath", "/proc/x", "refused"},
	{"spec.template.spec.containers[].volumeMounts[].readOnly", true, "refused"},
	{"spec.template.spec.containers[].volumeMounts[].subPath", "x", "refused"},
	{"spec.template.spec.containers[].envFrom", []any{map[string]any{"prefix": "X"}}, "refused"},
	{"spec.template.spec.containers[].securityContext", map[string]any{"runAsUser": 0.0}, "refused"},
	{"spec.template.spec.containers[].imagePullPolicy", "Always", "refused"},
	{"spec.template.spec.containers[].terminationMessagePath", "/t", "refused"},
	{"spec.template.spec.containers[].terminationMessagePolicy", "File", "refused"},
	{"spec.traffic[].latestRevision", true, "kept"},
	{"spec.traffic[].percent", 100.0, "kept"},
	{"spec.traffic[].tag", "blue", "kept"},
	{"spec.traffic[].configurationName", "NAME", "kept"},
	{"spec.traffic[].revisionName", "NAME-rev1", "refused: spec.traffic[0]"}, // beside latestRevision: true
	{"spec.bogus", "x", "refused"},
	{"spec.template.spec.containers[].bogus", "x", "refused"},
	{"metadata.resourceVersion", "", "accepted"}, // compare-and-swap on replace, tested apart
}

// v1AnnotationCases walk the annotations with meaning to Cloud Run.
var v1AnnotationCases = []struct {
	template   bool
	key, value string
	want       string
}{
	{false, apis.AnnotationInvokerIAMDisabled, "false", "kept"},
	{false, apis.AnnotationCustomAudiences, `["aud"]`, "kept"},
	{false, apis.AnnotationDescription, "d", "kept"},
	{false, apis.AnnotationClientName, "gcloud", "kept"},
	{false, apis.AnnotationClientVersion, "1", "kept"},
	{false, apis.AnnotationLaunchStage, "BETA", "kept"},
	{false, apis.AnnotationIngress, "all", "kept"},
	{false, apis.AnnotationIngress, "internal", "kept"},
	{false, apis.AnnotationIngress, "internal-and-cloud-load-balancing", "kept"},
	{false, apis.AnnotationIngress, "none", "refused"},
	{false, apis.AnnotationDefaultURLDisabled, "false", "kept"},
	{false, apis.AnnotationDefaultURLDisabled, "True", "kept"},
	{false, apis.AnnotationDefaultURLDisabled, "maybe", "refused"},
	{false, apis.AnnotationIAPEnabled, "true", "kept"},
	{false, apis.AnnotationIAPEnabled, "yes", "refused"},
	{false, "run.googleapis.com/binary-authorization", "default", "refused"},
	{false, "run.googleapis.com/minScale", "1", "refused"},
	{false, "run.googleapis.com/no-such-thing", "x", "refused"},
	{true, apis.AnnotationMinScale, "0", "kept"},
	{true, apis.AnnotationMaxScale, "3", "kept"},
	{true, apis.AnnotationCPUThrottling, "true", "kept"},
	{true, apis.AnnotationCPUThrottling, "false", "refused"},
	{true, apis.AnnotationStartupCPUBoost, "true", "kept"},
	{true, "run.googleapis.com/secrets", "s:projects/1/secrets/s", "refused"},
	{true, "run.googleapis.com/vpc-access-connector", "c", "refused"},
	{true, "run.googleapis.com/vpc-access-egress", "all-traffic", "refused"},
	{true, "run.googleapis.com/network-interfaces", "[]", "refused"},
	{true, "run.googleapis.com/cloudsql-instances", "p:r:i", "refused"},
	{true, "run.googleapis.com/execution-environment", "gen2", "refused"},
	{true, "run.googleapis.com/sessionAffinity", "true", "refused"},
	{true, "run.googleapis.com/encryption-key", "k", "refused"},
	{true, "run.googleapis.com/container-dependencies", "{}", "refused"},
	{true, "autoscaling.knative.dev/target", "5", "refused"},
}

// TestEveryV1FieldKeptOrRefused walks every field of the v1 shape through
// create and describe: each is shown back as sent, or refused with
// INVALID_ARGUMENT naming it. A field stored nowhere fails the test.
func TestEveryV1FieldKeptOrRefused(t *testing.T) {
	h := newHarness(t)
	tok := h.token(owner)

	covered := map[string]bool{}
	for _, c := range v1FieldCases {
		covered[c.path] = true
	}
	for p, handling := range apis.V1FieldPaths() {
		if handling != "server-owned" && !covered[p] {
			t.Errorf("v1 field %s (%s) has no case in v1FieldCases", p, handling)
		}
	}

	// A secret for the valueFrom cases, readable by the runtime account.
	for _, r := range []response{
		h.call(tok, "POST", "/v1/projects/"+project+"/secrets?secretId=s", map[string]any{"replication": map[string]any{"automatic": map[string]any{}}}),
		h.call(tok, "POST", "/v1/projects/"+project+"/secrets/s:addVersion", map[string]any{"payload": map[string]any{"data": "dmFsdWU="}}),
		h.call(tok, "POST", "/v1/projects/"+project+"/secrets/s:setIamPolicy", map[string]any{"policy": map[string]any{"bindings": []any{
			map[string]any{"role": "roles/secretmanager.secretAccessor", "members": []any{"serviceAccount:" + apis.DefaultServiceAccount(project)}}}}}),
	} {
		if r.status != 200 {
			t.Fatalf("making the secret: %d %s", r.status, r.raw)
		}
	}

	n := 0
	try := func(t *testing.T, svc map[string]any, name, path string, value any, want string) {
		t.Helper()
		r := h.call(tok, "POST", client.ServicesPath(project, region), svc)
		named := strings.ReplaceAll(path, "[]", "[0]")
		if w, p, ok := strings.Cut(want, ": "); ok {
			want, named = w, p
		}
		switch want {
		case "refused":
			if r.status != 400 || r.errStatus() != "INVALID_ARGUMENT" || !strings.Contains(r.raw, named) {
				t.Errorf("create with %s = %v: got %d %s, want 400 INVALID_ARGUMENT naming it", path, value, r.status, r.raw)
			}
		case "accepted":
			if r.status != 200 {
				t.Errorf("create with %s = %v: got %d %s, want 200", path, value, r.status, r.raw)
			}
		case "kept":
			if r.status != 200 {
				t.Fatalf("create with %s = %v: got %d %s, want 200", path, value, r.status, r.raw)
			}
			g := h.call(tok, "GET", client.ServicePath(project, region, name), nil)
			var got any
			if err := json.Unmarshal([]byte(g.raw), &got); err != nil {
				t.Fatal(err)
			}
			if !contains(lookup(got, path), value) {
				t.Errorf("describe after create with %s = %v: got %v there, want it kept", path, value, lookup(got, path))
			}
		}
	}
	for _, c := range v1FieldCases {
		t.Run(c.path+"="+fmt.Sprint(c.value), func(t *testing.T) {
			n++
			name := fmt.Sprintf("field-%d", n)
			svc := plainService(name)
			if strings.Contains(c.path, ".valueFrom") {
				set(svc, "spec.template.spec.containers[].env", []any{map[string]any{"name": "FROM_SECRET",
					"valueFrom": map[string]any{"secretKeyRef": map[string]any{"name": "s", "key": "latest"}}}})
			}
			v := c.value
			if s, ok := v.(string); ok {
				v = strings.ReplaceAll(s, "NAME", name)
			}
			if strings.Contains(c.path, "volume") {
				withVolume(svc)
			}
			if strings.Contains(c.path, "volumes[].secret") {
				set(svc, "spec.template.spec.volumes", []any{map[string]any{"name": "v", "secret": map[string]any{"secretName": "s",
					"items": []any{map[string]any{"key": "1", "path": "f"}}}}})
			}
			if strings.Contains(c.path, "livenessProbe") && !strings.Contains(c.path, "httpGet") && !strings.Contains(c.path, "grpc") {
				set(svc, "spec.template.spec.containers[].livenessProbe", map[string]any{"tcpSocket": map[string]any{}})
			}
			set(svc, c.path, v)
			try(t, svc, name, c.path, v, c.want)
		})
	}
	for _, c := range v1AnnotationCases {
		t.Run(c.key+"="+c.value, func(t *testing.T) {
			n++
			name := fmt.Sprintf("field-%d", n)
			svc := plainService(name)
			path := "metadata.annotations"
			if c.template {
				path = "spec.template.metadata.annotations"
			}
			set(svc, path, map[string]any{c.key: c.value})
			want := c.want
			if want == "refused" {
				want = "refused: " + c.key
			}
			try(t, svc, name, path, map[string]any{c.key: c.value}, want)
		})
	}
}

func plainService(name string) map[string]any {
	return map[string]any{
		"metadata": map[string]any{"name": name},
		"spec": map[string]any{
			"template": map[string]any{"spec": map[string]any{"containers": []any{map[string]any{
				"image": "file:///bin/true",
				"env":   []any{map[string]any{"name": "BASE", "value": "1"}},
				"ports": []any{map[string]any{"containerPort": 8080.0}},
			}}}},
			"traffic": []any{map[string]any{"latestRevision": true, "percent": 100.0}},
		},
	}
}

// set puts v at path in m, creating messages on the way; [] is the first
// element of a list.
func set(m map[string]any, path string, v any) {
	parts := strings.Split(path, ".")
	cur := m
	for i, p := range parts {
		name, list := strings.CutSuffix(p, "[]")
		if i == len(parts)-1 {
			cur[name] = v
			return
		}
		if list {
			l, _ := cur[name].([]any)
			if len(l) == 0 {
				l = []any{map[string]any{}}
				cur[name] = l
			}
			cur = l[0].(map[string]any)
			continue
		}
		next, _ := cur[name].(map[string]any)
		if next == nil {
			next = map[string]any{}
			cur[name] = next
		}
		cur = next
	}
}

func lookup(v any, path string) any {
	for _, p := range strings.Split(path, ".") {
		name, list := strings.CutSuffix(p, "[]")
		m, _ := v.(map[string]any)
		v = m[name]
		if list {
			l, _ := v.([]any)
			if len(l) == 0 {
				return nil
			}
			v = l[0]
		}
	}
	return v
}

// contains: got equals want, or (for maps) holds every key of want.
func contains(got, want any) bool {
	wm, ok := want.(map[string]any)
	if !ok {
		return reflect.DeepEqual(got, want)
	}
	gm, _ := got.(map[string]any)
	for k, v := range wm {
		if !reflect.DeepEqual(gm[k], v) {
			return false
		}
	}
	return true
}

// withVolume gives svc an in-memory volume "v" mounted at /tmp/v.
func withVolume(svc map[string]any) {
	set(svc, "spec.template.spec.volumes", []any{map[string]any{"name": "v", "emptyDir": map[string]any{"medium": "Memory"}}})
	set(svc, "spec.template.spec.containers[].volumeMounts", []any{map[string]any{"name": "v", "mountPath": "/tmp/v"}})
}
