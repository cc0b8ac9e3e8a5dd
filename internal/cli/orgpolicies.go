package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/usher-run/usher/internal/client"
	"github.com/usher-run/usher/internal/orgpolicy"
)

// newOrgPoliciesCmd is `usher org-policies`, gcloud org-policies' shape:
// guardrails on a project (package orgpolicy).
func newOrgPoliciesCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "org-policies",
		Short: "Manage organization policies (guardrails) of a project",
		Long: `Organization policies are guardrails on a project, named like Google's constraints:

  constraints/iam.allowedPolicyMemberDomains  only members of these domains may be granted roles
                                              (allUsers and allAuthenticatedUsers are refused)
  constraints/run.managed.requireInvokerIam   the invoker IAM check of a service cannot be disabled
  constraints/iam.disableServiceAccountKeyCreation   service-account keys cannot be created

Only changes are checked: what is already granted stays.`,
	}
	cmd.AddCommand(
		newOrgSetPolicyCmd(g),
		newOrgAllowDomainsCmd(g),
		newOrgEnforceCmd(g, "enable-enforce", true),
		newOrgEnforceCmd(g, "disable-enforce", false),
		newOrgDescribeCmd(g),
		newOrgListCmd(g),
		newOrgDeleteCmd(g),
	)
	return cmd
}

// constraintArg reads CONSTRAINT as "iam.allowedPolicyMemberDomains" or
// "constraints/iam.allowedPolicyMemberDomains".
func constraintArg(s string) (string, error) {
	id, ok := orgpolicy.ShortName(s)
	if !ok {
		return "", fmt.Errorf("constraint %q is not supported; use one of %s", s, orgpolicy.Supported())
	}
	return id, nil
}

// upsertOrgPolicy sets p on project: an update when the constraint has a
// policy (compare-and-swap when p carries an etag), else a create — what
// gcloud org-policies set-policy does.
func upsertOrgPolicy(ctx context.Context, c *client.Client, project, id string, p *orgpolicy.Policy) (*orgpolicy.Policy, error) {
	var out orgpolicy.Policy
	err := c.Do(ctx, http.MethodPatch, client.OrgPolicyPath(project, id), p, &out)
	if client.IsStatus(err, "NOT_FOUND") {
		create := *p
		create.Etag = ""
		if p.Spec != nil {
			spec := *p.Spec
			spec.Etag = ""
			create.Spec = &spec
		}
		err = c.Do(ctx, http.MethodPost, client.OrgPoliciesPath(project), &create, &out)
	}
	return &out, err
}

func newOrgSetPolicyCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "set-policy POLICY_FILE",
		Short: "Set org policies from a YAML or JSON file (name: projects/P/policies/CONSTRAINT, spec: rules: …)",
		Long: `Set one org policy, or a list of them, from a YAML or JSON file in Google's shape:

  name: projects/my-project/policies/iam.allowedPolicyMemberDomains
  spec:
    rules:
    - values:
        allowedValues: [example.com, example.org]

  name: projects/my-project/policies/run.managed.requireInvokerIam
  spec:
    rules:
    - enforce: true

The name's project wins over --project; a bare constraint name means --project's.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			b, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			policies, err := orgpolicy.Parse(b)
			if err != nil {
				return fmt.Errorf("%s: not an org policy: %w", args[0], err)
			}
			var results []*orgpolicy.Policy
			for _, p := range policies {
				resource, id, err := orgpolicy.ParseName(p.Name)
				if err != nil {
					return fmt.Errorf("%s: %w", args[0], err)
				}
				project := cfg.Project
				if resource != "" {
					var ok bool
					if project, ok = strings.CutPrefix(resource, "projects/"); !ok {
						return fmt.Errorf("%s: policy %s: org policies are set on projects here; the server's --org-policy-file covers every project", args[0], p.Name)
					}
				}
				p.Name = orgpolicy.PolicyName("projects/"+project, id)
				out, err := upsertOrgPolicy(cmd.Context(), c, project, id, p)
				if err != nil {
					return err
				}
				fmt.Fprintf(g.stderr, "Updated policy [%s].\n", out.Name)
				results = append(results, out)
			}
			if len(results) == 1 {
				return g.print(results[0], nil)
			}
			return g.print(results, nil)
		},
	}
}

func newOrgAllowDomainsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "allow-domains DOMAIN[,DOMAIN…]",
		Short: "Allow only members of these domains in IAM policies (sets constraints/iam.allowedPolicyMemberDomains)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			var domains []string
			for _, a := range args {
				for _, d := range strings.Split(a, ",") {
					if d = strings.TrimSpace(d); d != "" {
						domains = append(domains, d)
					}
				}
			}
			id, _ := orgpolicy.ShortName(orgpolicy.AllowedPolicyMemberDomains)
			p := &orgpolicy.Policy{
				Name: orgpolicy.PolicyName("projects/"+cfg.Project, id),
				Spec: &orgpolicy.PolicySpec{Rules: []orgpolicy.Rule{{Values: &orgpolicy.StringValues{AllowedValues: domains}}}},
			}
			out, err := upsertOrgPolicy(cmd.Context(), c, cfg.Project, id, p)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stderr, "Updated policy [%s].\n", out.Name)
			return g.print(out, nil)
		},
	}
}

func newOrgEnforceCmd(g *globals, use string, enforce bool) *cobra.Command {
	short := "Enforce a boolean constraint (e.g. run.managed.requireInvokerIam)"
	if !enforce {
		short = "Set a boolean constraint to not enforced on the project (the server's file still applies)"
	}
	return &cobra.Command{
		Use:   use + " CONSTRAINT",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			id, err := constraintArg(args[0])
			if err != nil {
				return err
			}
			p := &orgpolicy.Policy{
				Name: orgpolicy.PolicyName("projects/"+cfg.Project, id),
				Spec: &orgpolicy.PolicySpec{Rules: []orgpolicy.Rule{{Enforce: &enforce}}},
			}
			out, err := upsertOrgPolicy(cmd.Context(), c, cfg.Project, id, p)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stderr, "Updated policy [%s].\n", out.Name)
			return g.print(out, nil)
		},
	}
}

func newOrgDescribeCmd(g *globals) *cobra.Command {
	var effective bool
	cmd := &cobra.Command{
		Use:   "describe CONSTRAINT",
		Short: "Show the project's policy for a constraint (--effective: what is in force, the server's file included)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			id, err := constraintArg(args[0])
			if err != nil {
				return err
			}
			path := client.OrgPolicyPath(cfg.Project, id)
			if effective {
				path += ":getEffectivePolicy"
			}
			var out orgpolicy.Policy
			if err := c.Do(cmd.Context(), http.MethodGet, path, nil, &out); err != nil {
				return err
			}
			return g.print(&out, nil)
		},
	}
	cmd.Flags().BoolVar(&effective, "effective", false, "show the effective policy: the project's and the server's combined")
	return cmd
}

func newOrgListCmd(g *globals) *cobra.Command {
	var showUnset bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the project's org policies",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			var out struct {
				Policies []*orgpolicy.Policy `json:"policies"`
			}
			if err := c.Do(cmd.Context(), http.MethodGet, client.OrgPoliciesPath(cfg.Project), nil, &out); err != nil {
				return err
			}
			return g.print(out.Policies, func(w io.Writer) error {
				set := map[string]*orgpolicy.Policy{}
				for _, p := range out.Policies {
					if _, id, err := orgpolicy.ParseName(p.Name); err == nil {
						set[id] = p
					}
				}
				var rows [][]string
				for _, k := range orgpolicy.Constraints() {
					id, _ := orgpolicy.ShortName(k.Name)
					p := set[id]
					if p == nil && !showUnset {
						continue
					}
					listCol, boolCol, etag := "-", "-", "-"
					if p != nil {
						etag = p.Etag
						if k.ListConstraint != nil {
							listCol = "SET"
						} else {
							boolCol = "FALSE"
							if r := firstRule(p); r != nil && r.Enforce != nil && *r.Enforce {
								boolCol = "TRUE"
							}
						}
					}
					rows = append(rows, []string{k.Name, listCol, boolCol, etag})
				}
				if len(rows) == 0 {
					_, err := fmt.Fprintln(w, "Listed 0 items.")
					return err
				}
				return table(w, []string{"CONSTRAINT", "LIST_POLICY", "BOOLEAN_POLICY", "ETAG"}, rows)
			})
		},
	}
	cmd.Flags().BoolVar(&showUnset, "show-unset", false, "also list supported constraints without a policy")
	return cmd
}

func firstRule(p *orgpolicy.Policy) *orgpolicy.Rule {
	if p.Spec == nil || len(p.Spec.Rules) == 0 {
		return nil
	}
	return &p.Spec.Rules[0]
}

func newOrgDeleteCmd(g *globals) *cobra.Command {
	var etag string
	cmd := &cobra.Command{
		Use:   "delete CONSTRAINT",
		Short: "Delete the project's policy for a constraint, lifting its restriction (the server's file still applies)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			id, err := constraintArg(args[0])
			if err != nil {
				return err
			}
			path := client.OrgPolicyPath(cfg.Project, id)
			if etag != "" {
				path += "?etag=" + url.QueryEscape(etag)
			}
			if err := g.confirm(fmt.Sprintf("The project's policy for [%s] will be deleted.", id)); err != nil {
				return err
			}
			if err := c.Do(cmd.Context(), http.MethodDelete, path, nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(g.stderr, "Deleted policy [%s].\n", orgpolicy.PolicyName("projects/"+cfg.Project, id))
			return nil
		},
	}
	cmd.Flags().StringVar(&etag, "etag", "", "delete only if the policy's etag is still this")
	return cmd
}
