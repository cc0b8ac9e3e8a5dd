package console

import (
	"net/http"
	"sort"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/client"
	"github.com/usher-run/usher/internal/iam"
)

// The explanation of a refused request, linked from each denial on the Logs
// tab: the admin API's policy troubleshooter (POST /v1/iam:troubleshoot)
// asked, as the signed-in principal, whether the denied principal may invoke
// the service, and why. Like every page, it shows only what the API answers
// this principal (the troubleshooter needs run.services.getIamPolicy).

// troubleshootAnswer is the part of the troubleshooter's answer shown.
// explainedBindingRow is one binding of an explained policy.
type explainedBindingRow struct {
	Role      string
	Includes  bool
	Granted   bool
	Condition string
	// Members with whether each is the principal.
	Members []membershipRow
}

type membershipRow struct {
	Member string
	Match  string // Yes, No, Unknown
}

type explainedPolicyRow struct {
	Resource string
	Access   string
	Bindings []explainedBindingRow
}

type troubleshootView struct {
	Head       serviceHead
	Principal  string
	Permission string
	Access     string
	Granted    bool
	Sentences  []string
	Policies   []explainedPolicyRow
	Guardrails []string
}

func (c *Console) troubleshoot(w http.ResponseWriter, r *http.Request, s *session) error {
	ls, err := c.loadService(r, s, "logs")
	if err != nil {
		return err
	}
	ref := ls.Head.serviceRef
	principal := r.URL.Query().Get("principal")
	if principal == "" {
		return &pageError{Code: http.StatusBadRequest, Title: "Whose access?", Message: "Name a principal: …/troubleshoot?principal=user:EMAIL."}
	}
	v := troubleshootView{Head: ls.Head, Principal: principal, Permission: iam.PermRoutesInvoke}
	if r.URL.Query().Get("permission") == iam.PermIAPAccess { // the IAP 403 page links here
		v.Permission = iam.PermIAPAccess
	}
	out, err := ls.b.troubleshoot(apis.AccessTuple{
		Principal: principal, Permission: v.Permission,
		FullResourceName: client.ServiceFullResourceName(ref.Project, ref.Region, ref.Name),
	})
	if err != nil {
		return err
	}
	v.Access, v.Granted, v.Sentences, v.Guardrails = out.Access, out.Access == "GRANTED", out.Explanation, out.Guardrails
	for _, p := range out.ExplainedPolicies {
		row := explainedPolicyRow{Resource: p.FullResourceName, Access: p.Access}
		for _, b := range p.BindingExplanations {
			br := explainedBindingRow{Role: b.Role, Includes: b.RolePermission == "ROLE_PERMISSION_INCLUDED", Granted: b.Access == "GRANTED"}
			if b.Condition != nil {
				br.Condition = b.Condition.Title
			}
			for m, ms := range b.Memberships {
				match := "No"
				switch ms.Membership {
				case "MEMBERSHIP_INCLUDED":
					match = "Yes"
				case "MEMBERSHIP_UNKNOWN_UNSUPPORTED":
					match = "Unknown"
				}
				br.Members = append(br.Members, membershipRow{Member: m, Match: match})
			}
			sort.Slice(br.Members, func(i, j int) bool { return br.Members[i].Member < br.Members[j].Member })
			row.Bindings = append(row.Bindings, br)
		}
		v.Policies = append(v.Policies, row)
	}
	return c.pages.render(w, http.StatusOK, "troubleshoot.html", c.newView(s, ref.Project, ls.Service.Metadata.Name+" · Why", v))
}
