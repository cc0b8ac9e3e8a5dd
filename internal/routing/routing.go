// Package routing turns Usher's state into the immutable table the gateway
// consults on every request: host → service, the revision to send traffic to,
// the audiences a token may carry, and who may invoke.
//
// It is pure: Build does no I/O and never mutates its input, so a table can be
// built off the request path and swapped in atomically. A table is never
// modified after Build returns.
package routing

import (
	"strings"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/ratelimit"
)

// ServiceState is one service with what the gateway needs beside it.
type ServiceState struct {
	Project, Region string
	Service         *apis.Service
	// Revisions by name, at least the ones traffic points at.
	Revisions map[string]*apis.Revision
	// Policy is the service's own IAM policy (nil: none set).
	Policy *iam.Policy
}

// State is everything a table is built from.
type State struct {
	Services []ServiceState
	// ProjectPolicies by project ID; project grants are inherited by services.
	ProjectPolicies map[string]*iam.Policy
	Roles           *iam.Roles
	// CustomRoles are each project's custom roles (by project ID), which its
	// policies and its services' policies may grant (AddCustomRole).
	CustomRoles map[string][]*iam.Role
	// Domain, Scheme and Port make service URLs (Port "" for the default).
	Domain, Scheme, Port string
	// Revision is the store revision the state reflects.
	Revision int64
}

// Target is where a host's requests go and who may send them.
type Target struct {
	Project, Region, Service string
	URL                      string
	// Routes share the traffic by percent; empty while no revision is ready.
	Routes []Route
	// TotalPercent is the sum of Routes' percents (100 unless a revision
	// named in the traffic split is missing: its share is not routed).
	TotalPercent int
	// Audiences a token must carry one of (exact match).
	Audiences []string
	// Public is true when anyone may invoke without credentials.
	Public bool
	// InvokerIAMDisabled is true when Public comes from the disabled check
	// rather than an allUsers binding.
	InvokerIAMDisabled bool
	Invokers           *iam.Grantees
	// IAP, when set, puts the target behind the identity-aware proxy: every
	// request, public service or not, must come from a person (or token)
	// IAP lets through.
	IAP *IAP
	// AnonymousLimit holds anonymous callers of a public target to a rate
	// (usher.dev/anonymous-rate-limit); the zero Limit is none. Tag hosts
	// share their service's.
	AnonymousLimit ratelimit.Limit
	// Ingress says where requests may come from (run.googleapis.com/ingress);
	// the gateway answers others 404 before anything else. Tag hosts share
	// their service's.
	Ingress Ingress
}

// Ingress is a target's ingress setting, compiled from the service's
// annotation so the gateway compares a byte per request.
type Ingress uint8

const (
	// IngressAll admits every request (the zero value, the default).
	IngressAll Ingress = iota
	// IngressInternal admits requests from Usher's own instances and the
	// operator's internal networks only.
	IngressInternal
	// IngressInternalAndLB also admits the operator's trusted proxies.
	IngressInternalAndLB
)

// String is the annotation's value.
func (i Ingress) String() string {
	switch i {
	case IngressInternal:
		return apis.IngressInternal
	case IngressInternalAndLB:
		return apis.IngressInternalAndLB
	}
	return apis.IngressAll
}

// ingressOf compiles a service's ingress; a value validation would refuse
// (it never stores one) is the strictest, internal.
func ingressOf(svc *apis.Service) Ingress {
	switch svc.Ingress() {
	case apis.IngressAll:
		return IngressAll
	case apis.IngressInternalAndLB:
		return IngressInternalAndLB
	}
	return IngressInternal
}

// IAP is what the identity-aware proxy needs of a target.
type IAP struct {
	// Accessors hold iap.webServiceVersions.accessViaIAP.
	Accessors *iam.Grantees
	// Agents name the IAP service agent, the principal requests IAP let
	// through are invoked as (it needs run.routes.invoke, as on Google):
	// service-PROJECTNUMBER@…, and service-PROJECTID@…, the form gcloud
	// grants when the API names projects by ID.
	Agents [2]iam.Principal
	// Audience is the audience of the assertions apps receive.
	Audience string
}

// Route is a revision and its share of a target's traffic.
type Route struct {
	// Key identifies Revision across projects and regions
	// (PROJECT/REGION/NAME), computed once here rather than per request.
	Key      string
	Revision *apis.Revision
	Percent  int
}

// Pick chooses the route for a request given n, uniform in [0, TotalPercent).
// It returns nil when the target has no route.
func (t *Target) Pick(n int) *Route {
	for i := range t.Routes {
		r := &t.Routes[i]
		if n < r.Percent {
			return r
		}
		n -= r.Percent
	}
	if len(t.Routes) > 0 {
		return &t.Routes[len(t.Routes)-1]
	}
	return nil
}

// AcceptsAudience reports whether aud is one of the target's audiences.
func (t *Target) AcceptsAudience(aud string) bool {
	for _, a := range t.Audiences {
		if a == aud {
			return true
		}
	}
	return false
}

// Table maps service hosts to targets. Immutable.
//
// Its entries are spread over shards by a hash of the host (and of the
// service, for the hosts index), so Update copies only the few shards a write
// touches and shares the rest with the previous table: a write's cost does
// not grow with the number of services.
type Table struct {
	shards   [shardCount]*shard
	count    int
	revision int64
}

const shardCount = 512

type shard struct {
	byHost map[string]*Target
	// hosts are each service's hosts (its own and its tags'), so Update can
	// drop a changed service's entries without looking at any other.
	hosts map[ServiceKey][]string
}

// shardOf is FNV-1a of s: no allocation on the request path.
func shardOf(s string) int {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return int(h % shardCount)
}

func (k ServiceKey) shard() int { return shardOf(k.Project + "/" + k.Region + "/" + k.Service) }

func (t *Table) target(host string) *Target {
	if sh := t.shards[shardOf(host)]; sh != nil {
		return sh.byHost[host]
	}
	return nil
}

// ServiceKey names a service across projects and regions.
type ServiceKey struct{ Project, Region, Service string }

// Revision is the store revision the table reflects.
func (t *Table) Revision() int64 { return t.revision }

// Each calls fn for every host and its target, in no order (tests, tools).
func (t *Table) Each(fn func(host string, tgt *Target)) {
	for _, sh := range t.shards {
		if sh == nil {
			continue
		}
		for h, tgt := range sh.byHost {
			fn(h, tgt)
		}
	}
}

// HasService reports whether the table routes the service.
func (t *Table) HasService(k ServiceKey) bool {
	sh := t.shards[k.shard()]
	return sh != nil && len(sh.hosts[k]) > 0
}

// Len is the number of routable hosts.
func (t *Table) Len() int { return t.count }

// Lookup finds the target for a Host header value (port and letter case
// ignored). It allocates only for hosts with upper-case letters.
func (t *Table) Lookup(host string) *Target {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		host = host[:i]
	}
	host = strings.TrimSuffix(host, ".")
	if hasUpper(host) {
		host = strings.ToLower(host)
	}
	return t.target(host)
}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			return true
		}
	}
	return false
}

// Build compiles a table from state.
func Build(st State) *Table {
	return (&Table{}).Update(st, nil)
}

// Update returns a new table that differs from t only in the services of
// st.Services (compiled again from st) and those named in removed (gone);
// every other service's targets are shared with t, not compiled again, and
// only the shards holding changed entries are copied, so a write to one
// service costs the same whatever the number of others. st's
// ProjectPolicies, Roles and CustomRoles must be complete for the projects
// of st.Services. t is not modified: readers of t see it unchanged.
func (t *Table) Update(st State, removed []ServiceKey) *Table {
	out := &Table{shards: t.shards, count: t.count, revision: st.Revision}
	w := &tableWriter{t: out, copied: map[int]bool{}}
	for _, k := range removed {
		w.drop(k)
	}
	for _, ss := range st.Services {
		w.drop(ServiceKey{ss.Project, ss.Region, ss.Service.Metadata.Name})
	}
	custom := map[string]*iam.Roles{}
	for _, ss := range st.Services {
		if _, ok := custom[ss.Project]; !ok {
			custom[ss.Project] = st.customCatalogue(ss.Project)
		}
		w.add(st, ss, custom[ss.Project])
	}
	return out
}

// tableWriter changes a table being built by Update, copying each shard
// the first time it writes to it (copy on write; the old table keeps its own).
type tableWriter struct {
	t      *Table
	copied map[int]bool
}

func (w *tableWriter) shard(i int) *shard {
	if w.copied[i] {
		return w.t.shards[i]
	}
	old := w.t.shards[i]
	sh := &shard{byHost: map[string]*Target{}, hosts: map[ServiceKey][]string{}}
	if old != nil {
		sh.byHost = make(map[string]*Target, len(old.byHost)+1)
		for h, tgt := range old.byHost {
			sh.byHost[h] = tgt
		}
		sh.hosts = make(map[ServiceKey][]string, len(old.hosts)+1)
		for k, hs := range old.hosts {
			sh.hosts[k] = hs
		}
	}
	w.t.shards[i] = sh
	w.copied[i] = true
	return sh
}

func (w *tableWriter) setHost(host string, tgt *Target) {
	sh := w.shard(shardOf(host))
	if _, ok := sh.byHost[host]; !ok {
		w.t.count++
	}
	sh.byHost[host] = tgt
}

// drop removes service k's hosts, leaving a host another service now owns.
func (w *tableWriter) drop(k ServiceKey) {
	ks := k.shard()
	if old := w.t.shards[ks]; old == nil || old.hosts[k] == nil {
		return
	}
	hosts := w.shard(ks).hosts[k]
	for _, h := range hosts {
		if tgt := w.t.target(h); tgt != nil && tgt.Project == k.Project && tgt.Region == k.Region && tgt.Service == k.Service {
			delete(w.shard(shardOf(h)).byHost, h)
			w.t.count--
		}
	}
	delete(w.shard(ks).hosts, k)
}

// add compiles one service's targets into t.
func (w *tableWriter) add(st State, ss ServiceState, custom *iam.Roles) {
	svc := ss.Service
	name := svc.Metadata.Name
	host := apis.ServiceHost(name, ss.Project, ss.Region, st.Domain)
	url := apis.ServiceURL(st.Scheme, name, ss.Project, ss.Region, st.Domain, st.Port)
	levels := []iam.Level{
		{Resource: apis.ProjectResource(ss.Project), Policy: st.ProjectPolicies[ss.Project], Roles: custom},
		{Resource: apis.ServiceResource(ss.Project, ss.Region, name), Policy: ss.Policy},
	}
	invokers := st.Roles.Compile(iam.PermRoutesInvoke, levels...)
	disabled := svc.InvokerIAMDisabled()
	tgt := &Target{
		Project:            ss.Project,
		Region:             ss.Region,
		Service:            name,
		URL:                url,
		Audiences:          append([]string{url, url + "/"}, svc.CustomAudiences()...),
		Public:             disabled || invokers.Public(),
		InvokerIAMDisabled: disabled,
		Invokers:           invokers,
		AnonymousLimit:     svc.AnonymousRateLimit(),
		Ingress:            ingressOf(svc),
	}
	if svc.IAPEnabled() {
		agent, _ := strings.CutPrefix(apis.IAPServiceAgent(ss.Project), "serviceAccount:")
		tgt.IAP = &IAP{
			Accessors: st.Roles.Compile(iam.PermIAPAccess, levels...),
			Agents:    [2]iam.Principal{iam.NewPrincipal(agent), iam.NewPrincipal("service-" + ss.Project + "@gcp-sa-iap.iam.gserviceaccount.com")},
			Audience:  "/projects/" + apis.ProjectNumber(ss.Project) + "/locations/" + ss.Region + "/services/" + name,
		}
	}
	key := ServiceKey{ss.Project, ss.Region, name}
	if svc.DefaultURLDisabled() {
		// run.googleapis.com/default-url-disabled: none of the service's
		// run URLs answers, its tags' included; the gateway answers 404
		// as for a host no service has.
		return
	}
	hosts := []string{host}
	for _, tt := range trafficOf(svc) {
		rev := ss.Revisions[tt.RevisionName]
		if rev == nil {
			continue // never route to what we cannot name: its share is dropped
		}
		route := Route{Key: ss.Project + "/" + ss.Region + "/" + rev.Metadata.Name, Revision: rev, Percent: int(tt.Percent)}
		if route.Percent > 0 {
			tgt.Routes = append(tgt.Routes, route)
			tgt.TotalPercent += route.Percent
		}
		if tt.Tag != "" {
			// A tag has its own host, reaching only its revision; tokens
			// still name the service URL (tag URLs are no audience).
			tagged := *tgt
			route.Percent = 100
			tagged.Routes, tagged.TotalPercent = []Route{route}, 100
			tagged.URL = apis.TagURL(url, tt.Tag)
			th := TagHost(tt.Tag, host)
			w.setHost(th, &tagged)
			hosts = append(hosts, th)
		}
	}
	w.setHost(host, tgt)
	w.shard(key.shard()).hosts[key] = hosts
}

// trafficOf is the service's resolved traffic split: its status, or all to
// the latest ready revision for services reconciled before splits existed.
func trafficOf(svc *apis.Service) []apis.TrafficTarget {
	if len(svc.Status.Traffic) > 0 {
		return svc.Status.Traffic
	}
	if n := svc.Status.LatestReadyRevisionName; n != "" {
		return []apis.TrafficTarget{{RevisionName: n, Percent: 100}}
	}
	return nil
}

// TagHost is the host of a revision tag: TAG---SERVICEHOST, Cloud Run's form.
func TagHost(tag, serviceHost string) string { return tag + "---" + serviceHost }
