package console

import (
	"cmp"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/usher-run/usher/internal/iam"
)

// roleOption is a role in the Select a role control.
type roleOption struct {
	Name        string
	Title       string
	Description string
	Selected    bool
}

type roleOptionGroup struct {
	Label string
	Roles []roleOption
}

// offeredRoles are the roles a service's Grant Access form lists: Cloud Run
// roles, then the basic roles, each by title.
func (c *Console) offeredRoles() []roleOptionGroup {
	var run, basic []roleOption
	for _, r := range c.cfg.Roles.List() {
		o := roleOption{Name: r.Name, Title: r.Title, Description: r.Description}
		switch {
		case strings.HasPrefix(r.Name, "roles/run."):
			run = append(run, o)
		case r.Name == "roles/owner" || r.Name == "roles/editor" || r.Name == "roles/viewer":
			basic = append(basic, o)
		}
	}
	byTitle := func(a, b roleOption) int { return strings.Compare(a.Title, b.Title) }
	slices.SortFunc(run, byTitle)
	slices.SortFunc(basic, byTitle)
	return []roleOptionGroup{{Label: "Cloud Run", Roles: run}, {Label: "Basic", Roles: basic}}
}

// roleOptions is offeredRoles with selected marked.
func (c *Console) roleOptions(selected string) []roleOptionGroup {
	groups := c.offeredRoles()
	for _, g := range groups {
		for i := range g.Roles {
			g.Roles[i].Selected = g.Roles[i].Name == selected
		}
	}
	return groups
}

// offered returns the role if the form may grant it.
func (c *Console) offered(name string) (roleOption, bool) {
	for _, g := range c.offeredRoles() {
		for _, r := range g.Roles {
			if r.Name == name {
				return r, true
			}
		}
	}
	return roleOption{}, false
}

// roleTitle is a role's title, or its name for roles Usher does not know.
func (c *Console) roleTitle(name string) string {
	if r, ok := c.cfg.Roles.Lookup(name); ok {
		return r.Title
	}
	return name
}

// memberRow is one principal holding one role.
type memberRow struct {
	Member    string
	Role      string
	Display   string
	Kind      string
	RoleTitle string
	Public    bool
	Inherited bool
	Condition string
	Removable bool
}

// roleGroup is a role and the principals holding it.
type roleGroup struct {
	Name        string
	Title       string
	Description string
	Members     []memberRow
}

// groupByRole lays out the service's own bindings and, read-only, the
// project's (inherited), grouped by role and sorted by title.
func (c *Console) groupByRole(own, project *iam.Policy, canSet bool) []roleGroup {
	groups := map[string]*roleGroup{}
	add := func(b iam.Binding, inherited bool) {
		g, ok := groups[b.Role]
		if !ok {
			g = &roleGroup{Name: b.Role, Title: b.Role, Description: "A role this server does not know; it grants nothing."}
			if r, ok := c.cfg.Roles.Lookup(b.Role); ok {
				g.Title, g.Description = r.Title, r.Description
			}
			groups[b.Role] = g
		}
		for _, m := range b.Members {
			row := memberRow{Member: m, Role: b.Role, RoleTitle: g.Title, Inherited: inherited}
			row.Display, row.Kind = principalKind(m)
			if pm, err := iam.ParseMember(m); err == nil {
				row.Public = pm.IsPublic()
			}
			if b.Condition != nil {
				row.Condition = cmp.Or(b.Condition.Title, b.Condition.Expression)
			}
			row.Removable = canSet && !inherited && b.Condition == nil
			g.Members = append(g.Members, row)
		}
	}
	if own != nil {
		for _, b := range own.Bindings {
			add(b, false)
		}
	}
	if project != nil {
		for _, b := range project.Bindings {
			add(b, true)
		}
	}
	out := make([]roleGroup, 0, len(groups))
	for _, g := range groups {
		slices.SortStableFunc(g.Members, func(a, b memberRow) int {
			if a.Inherited != b.Inherited {
				if a.Inherited {
					return 1
				}
				return -1
			}
			return strings.Compare(a.Member, b.Member)
		})
		out = append(out, *g)
	}
	slices.SortFunc(out, func(a, b roleGroup) int { return strings.Compare(a.Title, b.Title) })
	return out
}

// grantFormView is the Grant Access panel.
type grantFormView struct {
	Action          string
	Cancel          string
	Etag            string
	Members         string
	Role            string
	RoleDescription string
	MemberProblems  []string
	RoleProblem     string
	FormProblem     string
	Conflict        bool
	RoleGroups      []roleOptionGroup
}

type permissionsView struct {
	Head          serviceHead
	Project       string
	Etag          string
	CanRead       bool
	CanSet        bool
	Groups        []roleGroup
	ProjectHidden string // why inherited grants are not shown, if they are not
	GrantLink     string
	RemoveAction  string
	Conflict      string
	Grant         *grantFormView
}

// loadPermissions reads what the Permissions tab shows, as the session's
// principal: the service's policy, whether it may change it, and the
// project's policy when it may read that.
func (c *Console) loadPermissions(r *http.Request, s *session) (*loadedService, *permissionsView, error) {
	ls, err := c.loadService(r, s, "permissions")
	if err != nil {
		return nil, nil, err
	}
	ref := ls.Head.serviceRef
	v := &permissionsView{
		Head: ls.Head, Project: ref.Project, CanRead: ls.Policy != nil,
		GrantLink: ref.URL("permissions/grant"), RemoveAction: ref.URL("permissions/remove"),
	}
	if ls.Policy != nil {
		v.Etag = ls.Policy.Etag
	}
	held, err := ls.b.servicePermissions(ref.Project, ref.Region, ref.Name, iam.PermServicesSetIamPolicy)
	if err != nil {
		return nil, nil, err
	}
	v.CanSet = held[iam.PermServicesSetIamPolicy] && ls.Policy != nil
	project, err := ls.b.projectPolicy(ref.Project)
	if e, ok := err.(*apiError); ok && e.Code == http.StatusForbidden {
		project = nil
		v.ProjectHidden = "Grants inherited from project " + ref.Project + " are not shown: viewing them needs " +
			iam.PermProjectsGetIamPolicy + " on the project."
	} else if err != nil {
		return nil, nil, err
	}
	v.Groups = c.groupByRole(ls.Policy, project, v.CanSet)
	return ls, v, nil
}

func (c *Console) permissions(w http.ResponseWriter, r *http.Request, s *session) error {
	ls, v, err := c.loadPermissions(r, s)
	if err != nil {
		return err
	}
	return c.renderPermissions(w, s, ls, v, http.StatusOK)
}

func (c *Console) renderPermissions(w http.ResponseWriter, s *session, ls *loadedService, v *permissionsView, status int) error {
	return c.pages.render(w, status, "permissions.html", c.newView(s, v.Project, ls.Service.Metadata.Name+" · Permissions", v))
}

// errCannotGrant refuses the Grant Access form to a principal without
// run.services.setIamPolicy (the API would refuse the write anyway).
func errCannotGrant(ref serviceRef) *pageError {
	return &pageError{Code: http.StatusForbidden, Title: "You don't have permission",
		Message: fmt.Sprintf("Granting access on %s needs permission '%s' (Cloud Run Admin or Owner).", ref.Name, iam.PermServicesSetIamPolicy)}
}

// newGrantForm is the panel for the policy at etag.
func (c *Console) newGrantForm(ref serviceRef, etag, members, role string) *grantFormView {
	g := &grantFormView{
		Action: ref.URL("permissions/grant"), Cancel: ref.URL("permissions"),
		Etag: etag, Members: members, Role: role, RoleGroups: c.roleOptions(role),
	}
	if r, ok := c.offered(role); ok {
		g.RoleDescription = r.Name + " — " + r.Description
	}
	return g
}

// grantForm opens the Grant Access panel over the Permissions tab.
func (c *Console) grantForm(w http.ResponseWriter, r *http.Request, s *session) error {
	ls, v, err := c.loadPermissions(r, s)
	if err != nil {
		return err
	}
	if !v.CanSet {
		return errCannotGrant(ls.Head.serviceRef)
	}
	v.Grant = c.newGrantForm(ls.Head.serviceRef, v.Etag, "", "")
	return c.renderPermissions(w, s, ls, v, http.StatusOK)
}

type confirmView struct {
	Head             serviceHead
	Action           string
	Cancel           string
	Etag             string
	MembersRaw       string
	Members          []string
	Public           []string
	AllUsers         bool
	AllAuthenticated bool
	Role             roleOption
	Invokes          bool
	Permissions      []string
	URL              string
}

// grant adds the form's principals to the role, on the policy the form was
// rendered from: a policy changed since is a conflict and nothing is
// written. Public principals need the confirmation step first.
func (c *Console) grant(w http.ResponseWriter, r *http.Request, s *session) error {
	ls, v, err := c.loadPermissions(r, s)
	if err != nil {
		return err
	}
	ref := ls.Head.serviceRef
	if !v.CanSet {
		return errCannotGrant(ref)
	}
	rawMembers, roleName, etag := r.PostForm.Get("members"), r.PostForm.Get("role"), r.PostForm.Get("etag")
	form := c.newGrantForm(ref, etag, rawMembers, roleName)
	members, problems := parsePrincipals(rawMembers)
	role, roleOK := c.offered(roleName)
	if !roleOK {
		form.RoleProblem = "Choose a role."
		if roleName != "" {
			form.RoleProblem = fmt.Sprintf("%s is not a role you can grant here; choose one from the list.", roleName)
		}
	}
	if len(problems) > 0 || !roleOK {
		form.MemberProblems = problems
		v.Grant = form
		return c.renderPermissions(w, s, ls, v, http.StatusBadRequest)
	}
	if !sameEtag(etag, v.Etag) {
		return c.grantConflict(w, s, ls, v, form)
	}
	if public := publicMembers(members); len(public) > 0 && r.PostForm.Get("confirm_public") != "yes" {
		return c.confirmPublic(w, s, ls, form, members, public, role)
	}

	policy := clonePolicy(ls.Policy)
	var added []string
	for _, m := range members {
		if policy.AddBinding(role.Name, m, nil) {
			added = append(added, m)
		}
	}
	if len(added) == 0 {
		c.setFlash(s, fmt.Sprintf("Nothing changed: %s already %s %s.", strings.Join(members, ", "), holdOrHolds(len(members)), role.Title))
		http.Redirect(w, r, ref.URL("permissions"), http.StatusSeeOther)
		return nil
	}
	if policy.Version == 0 {
		policy.Version = iam.Version1
	}
	policy.Etag = etag
	_, err = ls.b.setServicePolicy(ref.Project, ref.Region, ref.Name, &policy)
	if isAborted(err) {
		return c.grantConflict(w, s, ls, v, form)
	}
	if e, ok := err.(*apiError); ok && e.Code == http.StatusBadRequest {
		form.FormProblem = e.Message
		v.Grant = form
		return c.renderPermissions(w, s, ls, v, http.StatusBadRequest)
	}
	if err != nil {
		return err
	}
	c.cfg.Log.Info("console: access granted", "service", ref.Name, "region", ref.Region, "project", ref.Project,
		"role", role.Name, "members", strings.Join(added, ","), "principal", s.principal.Member())
	msg := fmt.Sprintf("Granted %s (%s) to %s.", role.Title, role.Name, strings.Join(added, ", "))
	if slices.Contains(added, "allUsers") && c.cfg.Roles.Compile(iam.PermRoutesInvoke, iam.Level{Policy: &policy}).Public() {
		msg += " This service is now public: anyone can invoke it without credentials."
	}
	c.setFlash(s, msg)
	http.Redirect(w, r, ref.URL("permissions"), http.StatusSeeOther)
	return nil
}

func holdOrHolds(n int) string {
	if n == 1 {
		return "holds"
	}
	return "hold"
}

// grantConflict shows the current policy and the form again, carrying the
// current etag, with what happened.
func (c *Console) grantConflict(w http.ResponseWriter, s *session, ls *loadedService, v *permissionsView, form *grantFormView) error {
	// v was loaded at the start of this request; if the write lost a race
	// since, reload so the person sees (and the form carries) the newest.
	fresh, err := ls.b.servicePolicy(ls.Head.Project, ls.Head.Region, ls.Head.Name)
	if err != nil {
		return err
	}
	if !sameEtag(fresh.Etag, v.Etag) {
		project, _ := ls.b.projectPolicy(ls.Head.Project)
		if v.ProjectHidden != "" {
			project = nil
		}
		ls.Policy, v.Etag = fresh, fresh.Etag
		v.Groups = c.groupByRole(fresh, project, v.CanSet)
	}
	form.Etag, form.Conflict = v.Etag, true
	v.Grant = form
	return c.renderPermissions(w, s, ls, v, http.StatusConflict)
}

// confirmPublic asks before granting to allUsers or allAuthenticatedUsers,
// saying what that means.
func (c *Console) confirmPublic(w http.ResponseWriter, s *session, ls *loadedService, form *grantFormView, members, public []string, role roleOption) error {
	cv := confirmView{
		Head: ls.Head, Action: form.Action, Cancel: form.Cancel, Etag: form.Etag,
		MembersRaw: form.Members, Members: members, Public: public, Role: role, URL: ls.Head.URL,
	}
	for _, m := range public {
		cv.AllUsers = cv.AllUsers || m == "allUsers"
		cv.AllAuthenticated = cv.AllAuthenticated || m == "allAuthenticatedUsers"
	}
	if r, ok := c.cfg.Roles.Lookup(role.Name); ok {
		cv.Invokes = r.Has(iam.PermRoutesInvoke)
		cv.Permissions = r.Permissions
		if len(cv.Permissions) == 0 && r.Has(iam.PermServicesSetIamPolicy) {
			cv.Permissions = []string{"every permission on this service, including changing who may access it"}
		}
	}
	title := "Make " + ls.Head.Name + " public?"
	if !cv.Invokes {
		title = "Grant " + role.Title + " to everyone?"
	}
	return c.pages.render(w, http.StatusOK, "confirm.html", c.newView(s, ls.Head.Project, title, cv))
}

// remove takes one principal out of one role, on the policy the page was
// rendered from.
func (c *Console) remove(w http.ResponseWriter, r *http.Request, s *session) error {
	ls, v, err := c.loadPermissions(r, s)
	if err != nil {
		return err
	}
	ref := ls.Head.serviceRef
	if !v.CanSet {
		return &pageError{Code: http.StatusForbidden, Title: "You don't have permission",
			Message: fmt.Sprintf("Removing access on %s needs permission '%s' (Cloud Run Admin or Owner).", ref.Name, iam.PermServicesSetIamPolicy)}
	}
	member, roleName, etag := r.PostForm.Get("member"), r.PostForm.Get("role"), r.PostForm.Get("etag")
	title := c.roleTitle(roleName)
	if !sameEtag(etag, v.Etag) {
		v.Conflict = fmt.Sprintf("%s was not removed from %s: the policy changed since this page was loaded. "+
			"The principals below are current; remove again if you still want to.", member, title)
		return c.renderPermissions(w, s, ls, v, http.StatusConflict)
	}
	wasPublic := ls.Head.Auth.Public
	policy := clonePolicy(ls.Policy)
	if !policy.RemoveBinding(roleName, member, nil, false) {
		c.setFlash(s, fmt.Sprintf("Nothing changed: %s does not hold %s on this service.", member, title))
		http.Redirect(w, r, ref.URL("permissions"), http.StatusSeeOther)
		return nil
	}
	policy.Etag = etag
	_, err = ls.b.setServicePolicy(ref.Project, ref.Region, ref.Name, &policy)
	if isAborted(err) {
		v.Conflict = fmt.Sprintf("%s was not removed from %s: someone changed the policy at the same moment. "+
			"Reload the page to see the current principals.", member, title)
		return c.renderPermissions(w, s, ls, v, http.StatusConflict)
	}
	if err != nil {
		return err
	}
	c.cfg.Log.Info("console: access removed", "service", ref.Name, "region", ref.Region, "project", ref.Project,
		"role", roleName, "member", member, "principal", s.principal.Member())
	msg := fmt.Sprintf("Removed %s from %s.", member, title)
	if wasPublic && !ls.Service.InvokerIAMDisabled() && !c.cfg.Roles.Compile(iam.PermRoutesInvoke, iam.Level{Policy: &policy}).Public() {
		msg += " The service requires authentication again."
	}
	c.setFlash(s, msg)
	http.Redirect(w, r, ref.URL("permissions"), http.StatusSeeOther)
	return nil
}

// sameEtag compares etags by the revision they encode (clients may re-encode
// them URL-safe). Anything unparsable is never the same.
func sameEtag(a, b string) bool {
	ra, errA := iam.ParseEtag(a)
	rb, errB := iam.ParseEtag(b)
	return errA == nil && errB == nil && ra == rb
}

// clonePolicy copies p deeply enough that editing bindings leaves p alone.
func clonePolicy(p *iam.Policy) iam.Policy {
	out := *p
	out.Bindings = make([]iam.Binding, len(p.Bindings))
	for i, b := range p.Bindings {
		b.Members = slices.Clone(b.Members)
		out.Bindings[i] = b
	}
	return out
}
