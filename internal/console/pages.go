package console

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/ratelimit"
)

// serviceRef names a service in the console's URLs.
type serviceRef struct {
	Project, Region, Name string
}

func refOf(r *http.Request) serviceRef {
	return serviceRef{Project: r.PathValue("project"), Region: r.PathValue("region"), Name: r.PathValue("service")}
}

func servicesURL(project string) string {
	return "/console/projects/" + url.PathEscape(project) + "/services"
}

// URL is the service's console page, plus an optional tab.
func (s serviceRef) URL(tab string) string {
	u := "/console/projects/" + url.PathEscape(s.Project) + "/locations/" + url.PathEscape(s.Region) +
		"/services/" + url.PathEscape(s.Name)
	if tab != "" {
		u += "/" + tab
	}
	return u
}

// statusView is a service's or revision's readiness, for a badge.
type statusView struct {
	Label   string // Ready, Failed, Deploying
	Class   string // ok, danger, pending
	Message string
}

func readiness(conds []apis.Condition) statusView {
	for _, c := range conds {
		if c.Type != apis.ConditionReady {
			continue
		}
		switch c.Status {
		case apis.StatusTrue:
			return statusView{Label: "Ready", Class: "ok"}
		case apis.StatusFalse:
			return statusView{Label: "Failed", Class: "danger", Message: c.Message}
		}
	}
	return statusView{Label: "Deploying", Class: "pending"}
}

// authView is the Authentication column: who may invoke without credentials.
type authView struct {
	Label  string
	Class  string // ok, danger, muted
	Detail string
	Public bool
}

// authentication says whether a service is public, as the gateway decides it:
// the invoker check disabled, or a role with run.routes.invoke granted to
// allUsers (policy nil: the caller may not read it).
func authentication(s *apis.Service, own *iam.Policy, roles *iam.Roles) authView {
	if s.IAPEnabled() {
		return authView{Label: "Identity-Aware Proxy", Class: "ok",
			Detail: "People sign in with a browser and need IAP-secured Web App User (roles/iap.httpsResourceAccessor); programs present an identity token of such a principal."}
	}
	if s.InvokerIAMDisabled() {
		return authView{Label: "Public — invoker check disabled", Class: "danger", Public: true,
			Detail: "The invoker IAM check is disabled (" + apis.AnnotationInvokerIAMDisabled + "): anyone can invoke it, whatever the policy says."}
	}
	if own == nil {
		return authView{Label: "Unknown", Class: "muted", Detail: "You cannot view this service's IAM policy."}
	}
	if roles.Compile(iam.PermRoutesInvoke, iam.Level{Policy: own}).Public() {
		return authView{Label: "Allow unauthenticated", Class: "danger", Public: true,
			Detail: "allUsers may invoke it: anyone on the internet, without credentials."}
	}
	return authView{Label: "Require authentication", Class: "ok",
		Detail: "Callers need an identity token of a principal with run.routes.invoke."}
}

// timestamp parses an RFC 3339 time, zero if absent or malformed.
func timestamp(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}
	}
	return t
}

// serviceRow is one line of the services list.
type serviceRow struct {
	Name       string
	Link       string
	URL        string
	Region     string
	Status     statusView
	Auth       authView
	Deployed   time.Time
	DeployedBy string
}

type servicesView struct {
	Project string
	Rows    []serviceRow
}

// projectsView is the project picker.
type projectsView struct {
	Current string
	Rows    []projectRow
}

type projectRow struct {
	ID, Name, Number, Link string
	Current                bool
}

// projectsList lists the active projects the principal may get.
func (c *Console) projectsList(w http.ResponseWriter, r *http.Request, s *session) error {
	b, err := c.backend(r, s)
	if err != nil {
		return err
	}
	list, err := b.core.ListProjects(b.ctx, b.caller, "lifecycleState:ACTIVE")
	if err != nil {
		return err
	}
	v := projectsView{Current: r.URL.Query().Get("from")}
	for _, l := range list {
		p := l.Project
		v.Rows = append(v.Rows, projectRow{ID: p.ProjectID, Name: p.Name, Number: p.ProjectNumber, Link: servicesURL(p.ProjectID), Current: p.ProjectID == v.Current})
	}
	return c.pages.render(w, http.StatusOK, "projects.html", c.newView(s, "", "Projects", v))
}

func (c *Console) servicesList(w http.ResponseWriter, r *http.Request, s *session) error {
	project := r.PathValue("project")
	b, err := c.backend(r, s)
	if err != nil {
		return err
	}
	services, err := b.listServices(project)
	if err != nil {
		return err
	}
	// Last deployed is when the newest revision was created; a principal
	// who may list services but not revisions sees the service's creation.
	created := map[string]time.Time{}
	if revs, err := b.listRevisions(project, "-", ""); err == nil {
		for _, rv := range revs {
			created[rv.Metadata.Labels[apis.LabelLocation]+"/"+rv.Metadata.Name] = timestamp(rv.Metadata.CreationTimestamp)
		}
	}
	v := servicesView{Project: project}
	for _, svc := range services {
		region := svc.Metadata.Labels[apis.LabelLocation]
		ref := serviceRef{Project: project, Region: region, Name: svc.Metadata.Name}
		var own *iam.Policy
		if p, err := b.servicePolicy(project, region, svc.Metadata.Name); err == nil {
			own = p
		}
		deployed := created[region+"/"+svc.Status.LatestCreatedRevisionName]
		if deployed.IsZero() {
			deployed = timestamp(svc.Metadata.CreationTimestamp)
		}
		v.Rows = append(v.Rows, serviceRow{
			Name: svc.Metadata.Name, Link: ref.URL(""), URL: svc.Status.URL, Region: region,
			Status: readiness(svc.Status.Conditions), Auth: authentication(&svc, own, c.cfg.Roles),
			Deployed: deployed, DeployedBy: svc.Metadata.Annotations[apis.AnnotationLastModifier],
		})
	}
	slices.SortFunc(v.Rows, func(a, b serviceRow) int {
		return strings.Compare(a.Name+"/"+a.Region, b.Name+"/"+b.Region)
	})
	return c.pages.render(w, http.StatusOK, "services.html", c.newView(s, project, "Services", v))
}

// tab is one of a service page's tabs.
type tab struct {
	Label   string
	Link    string
	Current bool
}

// serviceHead is the top of every service page: name, status, URL,
// authentication and the tabs.
type serviceHead struct {
	serviceRef
	ServicesLink string
	URL          string
	// URLDisabled: --no-default-url, so no URL answers (URL is empty).
	URLDisabled bool
	Status      statusView
	Auth        authView
	Tabs        []tab
}

// loadedService is a service and what the tabs share about it.
type loadedService struct {
	Head    serviceHead
	Service *apis.Service
	// Policy is the service's own policy; nil when the principal may not
	// read it.
	Policy *iam.Policy
	b      *backend
}

// loadService reads a service and its policy as the session's principal.
func (c *Console) loadService(r *http.Request, s *session, current string) (*loadedService, error) {
	ref := refOf(r)
	b, err := c.backend(r, s)
	if err != nil {
		return nil, err
	}
	svc, err := b.getService(ref.Project, ref.Region, ref.Name)
	if err != nil {
		return nil, err
	}
	ls := &loadedService{Service: svc, b: b}
	if p, err := b.servicePolicy(ref.Project, ref.Region, ref.Name); err == nil {
		ls.Policy = p
	} else if e, ok := err.(*apiError); !ok || e.Code != http.StatusForbidden {
		return nil, err
	}
	ls.Head = serviceHead{
		serviceRef:   ref,
		ServicesLink: servicesURL(ref.Project),
		URL:          svc.Status.URL,
		URLDisabled:  svc.DefaultURLDisabled(),
		Status:       readiness(svc.Status.Conditions),
		Auth:         authentication(svc, ls.Policy, c.cfg.Roles),
	}
	for _, t := range []struct{ label, path string }{
		{"Overview", ""}, {"Revisions", "revisions"}, {"Permissions", "permissions"}, {"Metrics", "metrics"}, {"Logs", "logs"},
	} {
		ls.Head.Tabs = append(ls.Head.Tabs, tab{Label: t.label, Link: ref.URL(t.path), Current: t.path == current})
	}
	return ls, nil
}

// trafficRow is one traffic target.
type trafficRow struct {
	Revision string
	Percent  int64
	Tag      string
	Latest   bool
}

type overviewView struct {
	Head              serviceHead
	LatestReady       string
	LatestCreated     string
	Traffic           []trafficRow
	Image             string
	ServiceAccount    string
	Command           string
	Args              string
	Env               []apis.EnvVar
	MinInstances      string
	MaxInstances      string
	Concurrency       string
	Timeout           string
	Created           time.Time
	Creator           string
	LastModifier      string
	StatusMessage     string
	CustomAudiences   []string
	InvokerIAMChecked bool
	IAPEnabled        bool
	// AnonymousLimit is the usher.dev/anonymous-rate-limit in force (nil: none).
	AnonymousLimit *anonymousLimitView
	// CanToggleIAP: the principal may update the service and set its policy.
	CanToggleIAP bool
	IAPAction    string
	// Ingress is run.googleapis.com/ingress; DefaultURLDisabled its
	// default-url-disabled.
	Ingress            string
	DefaultURLDisabled bool
	// WorkingDir and Volumes ("NAME at PATH, SIZE") of the container.
	WorkingDir string
	Volumes    []string
}

func (c *Console) overview(w http.ResponseWriter, r *http.Request, s *session) error {
	ls, err := c.loadService(r, s, "")
	if err != nil {
		return err
	}
	svc := ls.Service
	spec := svc.Spec.Template.Spec
	v := overviewView{
		Head:               ls.Head,
		LatestReady:        svc.Status.LatestReadyRevisionName,
		LatestCreated:      svc.Status.LatestCreatedRevisionName,
		ServiceAccount:     spec.ServiceAccountName,
		Created:            timestamp(svc.Metadata.CreationTimestamp),
		Creator:            svc.Metadata.Annotations[apis.AnnotationCreator],
		LastModifier:       svc.Metadata.Annotations[apis.AnnotationLastModifier],
		StatusMessage:      ls.Head.Status.Message,
		CustomAudiences:    svc.CustomAudiences(),
		InvokerIAMChecked:  !svc.InvokerIAMDisabled(),
		IAPEnabled:         svc.IAPEnabled(),
		IAPAction:          ls.Head.serviceRef.URL("iap"),
		Ingress:            svc.Ingress(),
		DefaultURLDisabled: svc.DefaultURLDisabled(),
	}
	if l := svc.AnonymousRateLimit(); l.Enabled() {
		v.AnonymousLimit = &anonymousLimitView{l}
	}
	if held, err := ls.b.servicePermissions(ls.Head.Project, ls.Head.Region, ls.Head.Name, iam.PermServicesUpdate, iam.PermServicesSetIamPolicy); err == nil {
		v.CanToggleIAP = held[iam.PermServicesUpdate] && held[iam.PermServicesSetIamPolicy]
	}
	v.MinInstances, v.MaxInstances, v.Concurrency, v.Timeout = scaling(svc.Spec.Template.Metadata.Annotations, spec)
	if len(spec.Containers) > 0 {
		ctr := spec.Containers[0]
		v.Image, v.Env = ctr.Image, ctr.Env
		v.Command, v.Args = strings.Join(ctr.Command, " "), strings.Join(ctr.Args, " ")
		v.WorkingDir = ctr.WorkingDir
		for _, m := range ctr.VolumeMounts {
			size := "no size limit"
			for _, vol := range spec.Volumes {
				if vol.Name == m.Name && vol.EmptyDir != nil && vol.EmptyDir.SizeLimit != "" {
					size = vol.EmptyDir.SizeLimit
				}
			}
			v.Volumes = append(v.Volumes, m.Name+" at "+m.MountPath+", "+size)
		}
	}
	for _, t := range svc.Status.Traffic {
		v.Traffic = append(v.Traffic, trafficRow{Revision: t.RevisionName, Percent: t.Percent, Tag: t.Tag,
			Latest: t.LatestRevision != nil && *t.LatestRevision})
	}
	return c.pages.render(w, http.StatusOK, "overview.html", c.newView(s, ls.Head.Project, svc.Metadata.Name, v))
}

const notSet = "Not set"

// scaling renders a revision's scaling settings as Cloud Run's console does.
func scaling(annotations map[string]string, spec apis.RevisionSpec) (minInst, maxInst, concurrency, timeout string) {
	minInst, maxInst = "0", notSet
	if v := annotations[apis.AnnotationMinScale]; v != "" {
		minInst = v
	}
	if v := annotations[apis.AnnotationMaxScale]; v != "" {
		maxInst = v
	}
	concurrency = strconv.Itoa(apis.DefaultContainerConcurrency)
	if spec.ContainerConcurrency != nil {
		concurrency = strconv.FormatInt(*spec.ContainerConcurrency, 10)
	}
	timeout = strconv.Itoa(apis.DefaultTimeoutSeconds) + " s"
	if spec.TimeoutSeconds > 0 {
		timeout = strconv.FormatInt(spec.TimeoutSeconds, 10) + " s"
	}
	return minInst, maxInst, concurrency, timeout
}

// revisionRow is one revision in the Revisions tab.
type revisionRow struct {
	Name           string
	Status         statusView
	Traffic        int64
	Serving        bool
	Created        time.Time
	Image          string
	ServiceAccount string
	Instances      string
	Concurrency    string
}

type revisionsView struct {
	Head serviceHead
	Rows []revisionRow
}

func (c *Console) revisions(w http.ResponseWriter, r *http.Request, s *session) error {
	ls, err := c.loadService(r, s, "revisions")
	if err != nil {
		return err
	}
	ref := ls.Head.serviceRef
	revs, err := ls.b.listRevisions(ref.Project, ref.Region, ref.Name)
	if err != nil {
		return err
	}
	traffic := map[string]int64{}
	for _, t := range ls.Service.Status.Traffic {
		traffic[t.RevisionName] += t.Percent
	}
	v := revisionsView{Head: ls.Head}
	for _, rv := range revs {
		row := revisionRow{
			Name: rv.Metadata.Name, Status: readiness(rv.Status.Conditions),
			Traffic: traffic[rv.Metadata.Name], Serving: traffic[rv.Metadata.Name] > 0,
			Created: timestamp(rv.Metadata.CreationTimestamp), ServiceAccount: rv.Spec.ServiceAccountName,
		}
		minInst, maxInst, concurrency, _ := scaling(rv.Metadata.Annotations, rv.Spec)
		row.Instances, row.Concurrency = "min "+minInst, concurrency
		if maxInst != notSet {
			row.Instances += " · max " + maxInst
		}
		if len(rv.Spec.Containers) > 0 {
			row.Image = rv.Spec.Containers[0].Image
		}
		v.Rows = append(v.Rows, row)
	}
	slices.SortFunc(v.Rows, func(a, b revisionRow) int {
		if c := b.Created.Compare(a.Created); c != 0 {
			return c
		}
		return strings.Compare(b.Name, a.Name)
	})
	return c.pages.render(w, http.StatusOK, "revisions.html", c.newView(s, ref.Project, ls.Service.Metadata.Name+" · Revisions", v))
}

type logsView struct {
	Head             serviceHead
	RecordingDenials bool
	Denials          []Denial
	Lines            []LogLine
}

func (c *Console) logs(w http.ResponseWriter, r *http.Request, s *session) error {
	ls, err := c.loadService(r, s, "logs")
	if err != nil {
		return err
	}
	ref := ls.Head.serviceRef
	v := logsView{Head: ls.Head}
	if v.Lines, err = ls.b.serviceLogs(ref.Project, ref.Region, ref.Name, 200); err != nil {
		return err
	}
	if d := c.cfg.Denials; d != nil {
		v.RecordingDenials = true
		v.Denials = d.Denials(ref.Project, ref.Region, ref.Name, 50)
	}
	return c.pages.render(w, http.StatusOK, "logs.html", c.newView(s, ref.Project, ls.Service.Metadata.Name+" · Logs", v))
}

// anonymousLimitView renders an anonymous rate limit for people.
type anonymousLimitView struct{ ratelimit.Limit }

// Summary reads "5/s per address (burst 5), 500/s in all (burst 500)".
func (v anonymousLimitView) Summary() string {
	f := func(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }
	return f(v.RPS) + "/s per address (burst " + strconv.Itoa(v.Burst) + "), " +
		f(v.TotalRPS) + "/s in all (burst " + strconv.Itoa(v.TotalBurst) + ")"
}
