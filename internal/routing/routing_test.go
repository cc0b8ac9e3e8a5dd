package routing

import (
	"strings"
	"testing"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/iam"
)

func service(name string, annotations map[string]string) *apis.Service {
	return &apis.Service{
		Metadata: apis.ObjectMeta{Name: name, Namespace: "p", Annotations: annotations},
		Status:   apis.ServiceStatus{LatestReadyRevisionName: name + "-00001-abc"},
	}
}

func TestBuild(t *testing.T) {
	rev := &apis.Revision{Metadata: apis.ObjectMeta{Name: "private-00001-abc"}}
	st := State{
		Roles:  iam.Predefined(),
		Domain: "run.localhost", Scheme: "http", Port: "8080", Revision: 7,
		ProjectPolicies: map[string]*iam.Policy{"p": {Bindings: []iam.Binding{{Role: "roles/run.invoker", Members: []string{"user:proj@example.com"}}}}},
		Services: []ServiceState{
			{Project: "p", Region: "r1", Service: service("private", nil), Revisions: map[string]*apis.Revision{"private-00001-abc": rev}},
			{Project: "p", Region: "r1", Service: service("public", nil),
				Policy: &iam.Policy{Bindings: []iam.Binding{{Role: "roles/run.invoker", Members: []string{"allUsers"}}}}},
			{Project: "p", Region: "r2", Service: service("disabled", map[string]string{apis.AnnotationInvokerIAMDisabled: "True"})},
			{Project: "p", Region: "r2", Service: service("enabled", map[string]string{apis.AnnotationInvokerIAMDisabled: "false"})},
			{Project: "p", Region: "r2", Service: service("aud", map[string]string{apis.AnnotationCustomAudiences: `["https://custom"]`})},
		},
	}
	table := Build(st)
	if table.Revision() != 7 || table.Len() != 5 {
		t.Fatalf("table revision %d len %d, want 7 and 5", table.Revision(), table.Len())
	}
	num := apis.ProjectNumber("p")
	tests := []struct {
		host       string
		wantName   string
		wantPublic bool
	}{
		{"private-" + num + ".r1.run.localhost:8080", "private", false},
		{"PRIVATE-" + num + ".R1.run.localhost", "private", false},
		{"private-" + num + ".r1.run.localhost.", "private", false},
		{"public-" + num + ".r1.run.localhost:8080", "public", true},
		{"disabled-" + num + ".r2.run.localhost:8080", "disabled", true},
		{"enabled-" + num + ".r2.run.localhost:8080", "enabled", false},
		{"private-" + num + ".r2.run.localhost:8080", "", false},
		{"private.r1.run.localhost", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			tgt := table.Lookup(tt.host)
			if tt.wantName == "" {
				if tgt != nil {
					t.Fatalf("Lookup(%q) = %s, want nothing", tt.host, tgt.Service)
				}
				return
			}
			if tgt == nil {
				t.Fatalf("Lookup(%q) = nil, want %s", tt.host, tt.wantName)
			}
			if tgt.Service != tt.wantName || tgt.Public != tt.wantPublic {
				t.Errorf("Lookup(%q) = %s public=%v, want %s public=%v", tt.host, tgt.Service, tgt.Public, tt.wantName, tt.wantPublic)
			}
		})
	}
	priv := table.Lookup("private-" + num + ".r1.run.localhost")
	if r := priv.Pick(0); r == nil || r.Revision != rev || r.Key != "p/r1/private-00001-abc" || priv.TotalPercent != 100 {
		t.Errorf("private route = %+v, want %v at 100%%", r, rev)
	}
	url := "http://private-" + num + ".r1.run.localhost:8080"
	if priv.URL != url || !priv.AcceptsAudience(url) || !priv.AcceptsAudience(url+"/") || priv.AcceptsAudience(url+"/path") {
		t.Errorf("audiences of %s = %v", priv.URL, priv.Audiences)
	}
	if !priv.Invokers.Decide(iam.NewPrincipal("proj@example.com")).Allowed {
		t.Errorf("project-level invoker not inherited")
	}
	aud := table.Lookup("aud-" + num + ".r2.run.localhost")
	if !aud.AcceptsAudience("https://custom") || aud.AcceptsAudience("https://custom/") {
		t.Errorf("custom audiences = %v", aud.Audiences)
	}
	if table.Lookup("public-"+num+".r1.run.localhost").Pick(0) != nil {
		t.Errorf("a service whose revision is unknown must have no revision")
	}
}

func TestLookupDoesNotAllocate(t *testing.T) {
	table := Build(State{Roles: iam.Predefined(), Domain: "run.localhost", Scheme: "http",
		Services: []ServiceState{{Project: "p", Region: "r", Service: service("s", nil)}}})
	host := "s-" + apis.ProjectNumber("p") + ".r.run.localhost:8080"
	if n := testing.AllocsPerRun(100, func() { table.Lookup(host) }); n != 0 {
		t.Errorf("Lookup allocates %v times, want 0", n)
	}
}

func TestTrafficSplitAndTags(t *testing.T) {
	revs := map[string]*apis.Revision{}
	for _, n := range []string{"s-00001-aaa", "s-00002-bbb", "s-00003-ccc"} {
		revs[n] = &apis.Revision{Metadata: apis.ObjectMeta{Name: n}}
	}
	svc := service("s", nil)
	svc.Status.Traffic = []apis.TrafficTarget{
		{RevisionName: "s-00001-aaa", Percent: 30},
		{RevisionName: "s-00002-bbb", Percent: 70, Tag: "blue"},
		{RevisionName: "s-00003-ccc", Percent: 0, Tag: "green"},
		{RevisionName: "s-00009-gone", Percent: 0, Tag: "ghost"},
	}
	table := Build(State{Roles: iam.Predefined(), Domain: "run.localhost", Scheme: "http", Port: "8080",
		Services: []ServiceState{{Project: "p", Region: "r", Service: svc, Revisions: revs}}})
	host := apis.ServiceHost("s", "p", "r", "run.localhost")
	main := table.Lookup(host)
	if main.TotalPercent != 100 || len(main.Routes) != 2 {
		t.Fatalf("routes = %+v, want two sharing 100%%", main.Routes)
	}
	counts := map[string]int{}
	for n := range 100 {
		counts[main.Pick(n).Revision.Metadata.Name]++
	}
	if counts["s-00001-aaa"] != 30 || counts["s-00002-bbb"] != 70 {
		t.Errorf("split over [0,100) = %v, want 30/70", counts)
	}
	for tag, want := range map[string]string{"blue": "s-00002-bbb", "green": "s-00003-ccc"} {
		tgt := table.Lookup(TagHost(tag, host) + ":8080")
		if tgt == nil || tgt.Pick(0).Revision.Metadata.Name != want || tgt.TotalPercent != 100 {
			t.Errorf("tag %s routes to %+v, want %s", tag, tgt, want)
			continue
		}
		if !strings.HasPrefix(tgt.URL, "http://"+tag+"---s-") || !tgt.AcceptsAudience(main.URL) || tgt.AcceptsAudience(tgt.URL) {
			t.Errorf("tag %s: url %s audiences %v; tokens must name the service URL, not the tag URL", tag, tgt.URL, tgt.Audiences)
		}
	}
	if table.Lookup(TagHost("ghost", host)) != nil {
		t.Errorf("a tag on a missing revision is routable")
	}
}
