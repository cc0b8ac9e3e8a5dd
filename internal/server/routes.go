package server

import (
	"strings"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/mirror"
	"github.com/usher-run/usher/internal/routing"
	"github.com/usher-run/usher/internal/state"
)

// routeKeeper keeps the gateway's routing table up to date from the
// mirror's changes: a write to one service recompiles that service alone
// (routing.Table.Update), so a policy write costs the same with 1 or 10,000
// services. Project-wide writes (a project's policy, a custom role) change
// what every service of the project inherits and rebuild the whole table.
// It runs under the mirror's lock, so it needs none of its own.
type routeKeeper struct {
	roles                *iam.Roles
	domain, scheme, port string

	table *routing.Table
	// global is the project-wide part of the last full build (project
	// policies, custom roles): every change to it causes a full build.
	global routing.State
	// revisionOwner maps a revision's store key to the service whose
	// traffic names it, so a revision's change (or deletion, which carries
	// no value) recompiles that service.
	revisionOwner map[string]routing.ServiceKey
}

// apply returns the table after the change to keys (nil: everything), and
// whether any service changed (the controller cares only about those).
func (k *routeKeeper) apply(objects map[string]mirror.Object, keys []string, rev int64) (*routing.Table, bool) {
	if keys == nil || k.table == nil {
		return k.rebuild(objects, rev), true
	}
	touched := map[routing.ServiceKey]bool{}
	servicesChanged := false
	for _, key := range keys {
		switch {
		case strings.HasPrefix(key, state.ProjectPoliciesPrefix), strings.HasPrefix(key, state.RolesPrefix), strings.HasPrefix(key, state.ProjectsPrefix):
			return k.rebuild(objects, rev), true
		case strings.HasPrefix(key, state.ServicesPrefix):
			if p := state.SplitKey(key, state.ServicesPrefix, 3); p != nil {
				touched[routing.ServiceKey{Project: p[0], Region: p[1], Service: p[2]}] = true
				servicesChanged = true
			}
		case strings.HasPrefix(key, state.ServicePoliciesPrefix):
			if p := state.SplitKey(key, state.ServicePoliciesPrefix, 3); p != nil {
				touched[routing.ServiceKey{Project: p[0], Region: p[1], Service: p[2]}] = true
			}
		case strings.HasPrefix(key, state.RevisionsPrefix):
			if owner, ok := k.revisionOwner[key]; ok {
				touched[owner] = true
			}
		}
	}
	st := k.global
	st.Revision = rev
	st.Services = nil
	var removed []routing.ServiceKey
	for sk := range touched {
		obj, ok := objects[state.ServiceKey(sk.Project, sk.Region, sk.Service)]
		svc, _ := obj.Value.(*apis.Service)
		if !ok || svc == nil || !state.ProjectServes(objects[state.ProjectKey(sk.Project)].Value) {
			removed = append(removed, sk)
			continue
		}
		st.Services = append(st.Services, k.serviceState(objects, sk, svc))
	}
	k.table = k.table.Update(st, removed)
	return k.table, servicesChanged
}

func (k *routeKeeper) rebuild(objects map[string]mirror.Object, rev int64) *routing.Table {
	st := routingState(objects, rev, k.roles, k.domain, k.scheme, k.port)
	k.revisionOwner = map[string]routing.ServiceKey{}
	for _, ss := range st.Services {
		sk := routing.ServiceKey{Project: ss.Project, Region: ss.Region, Service: ss.Service.Metadata.Name}
		for _, name := range revisionNames(ss.Service) {
			k.revisionOwner[state.RevisionKey(ss.Project, ss.Region, name)] = sk
		}
	}
	k.table = routing.Build(st)
	k.global = st
	k.global.Services = nil
	return k.table
}

// serviceState is what routing needs of one service, read from objects by
// key (no scan of the state).
func (k *routeKeeper) serviceState(objects map[string]mirror.Object, sk routing.ServiceKey, svc *apis.Service) routing.ServiceState {
	ss := routing.ServiceState{Project: sk.Project, Region: sk.Region, Service: svc, Revisions: map[string]*apis.Revision{}}
	for _, name := range revisionNames(svc) {
		key := state.RevisionKey(sk.Project, sk.Region, name)
		k.revisionOwner[key] = sk
		if r, ok := objects[key].Value.(*apis.Revision); ok {
			ss.Revisions[name] = r
		}
	}
	if p, ok := objects[state.ServicePolicyKey(sk.Project, sk.Region, sk.Service)].Value.(*iam.Policy); ok {
		ss.Policy = p
	}
	return ss
}

// revisionNames are the revisions a service's traffic may name.
func revisionNames(s *apis.Service) []string {
	names := make([]string, 0, 1+len(s.Status.Traffic))
	if n := s.Status.LatestReadyRevisionName; n != "" {
		names = append(names, n)
	}
	for _, t := range s.Status.Traffic {
		if t.RevisionName != "" {
			names = append(names, t.RevisionName)
		}
	}
	return names
}

// touchesProjects reports whether keys include a project record.
func touchesProjects(keys []string) bool {
	for _, k := range keys {
		if strings.HasPrefix(k, state.ProjectsPrefix) {
			return true
		}
	}
	return false
}
