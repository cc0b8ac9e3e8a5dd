package cli

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/client"
	"github.com/usher-run/usher/internal/iam"
)

func newTroubleshootCmd(g *globals) *cobra.Command {
	var principal, service, permission string
	cmd := &cobra.Command{
		Use:   "troubleshoot",
		Short: "Explain whether a principal may invoke a service, and why",
		Long: `Explain whether a principal holds a permission (run.routes.invoke: may it
invoke?) on a service, and why: the binding that grants it, or the roles that
would and the resources where the principal is missing from them, with
conditions and guardrails that bear on it. Decided by the same evaluator the
gateway uses. Needs run.services.getIamPolicy on the service.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if principal == "" || service == "" {
				return errors.New("--principal and --service are required")
			}
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			body := map[string]any{"accessTuple": apis.AccessTuple{
				Principal:        principal,
				FullResourceName: client.ServiceFullResourceName(cfg.Project, cfg.Region, service),
				Permission:       permission,
			}}
			var out apis.TroubleshootResponse
			if err := c.Do(cmd.Context(), http.MethodPost, client.TroubleshootPath, body, &out); err != nil {
				return err
			}
			return g.print(out, func(w io.Writer) error { return printTroubleshoot(w, &out) })
		},
	}
	f := cmd.Flags()
	f.StringVar(&principal, "principal", "", "who: user:EMAIL, serviceAccount:EMAIL, EMAIL, or allUsers for a caller without credentials")
	f.StringVar(&service, "service", "", "the service")
	f.StringVar(&permission, "permission", iam.PermRoutesInvoke, "the permission")
	return cmd
}

func printTroubleshoot(w io.Writer, out *apis.TroubleshootResponse) error {
	fmt.Fprintf(w, "Access: %s\n", out.Access)
	fmt.Fprintf(w, "  principal:  %s\n  resource:   %s\n  permission: %s\n\n", out.AccessTuple.Principal, out.AccessTuple.FullResourceName, out.AccessTuple.Permission)
	for _, e := range out.Explanation {
		fmt.Fprintf(w, "%s\n", e)
	}
	fmt.Fprintln(w, "\nPolicies evaluated (the service, then its project):")
	for _, p := range out.ExplainedPolicies {
		fmt.Fprintf(w, "  %s: %s\n", p.FullResourceName, p.Access)
		if p.Access == "UNKNOWN_INFO_DENIED" {
			fmt.Fprintln(w, "    (you may not read this policy)")
			continue
		}
		if len(p.BindingExplanations) == 0 {
			fmt.Fprintln(w, "    (no bindings)")
		}
		for _, b := range p.BindingExplanations {
			includes := "does not include the permission"
			switch b.RolePermission {
			case "ROLE_PERMISSION_INCLUDED":
				includes = "includes the permission"
			case "ROLE_PERMISSION_UNKNOWN_INFO_DENIED":
				includes = "unknown role"
			}
			cond := ""
			if b.Condition != nil {
				cond = " if " + b.Condition.Title
			}
			fmt.Fprintf(w, "    %s (%s)%s: %s\n", b.Role, includes, cond, b.Access)
			members := make([]string, 0, len(b.Memberships))
			for m := range b.Memberships {
				members = append(members, m)
			}
			slices.Sort(members)
			for _, m := range members {
				fmt.Fprintf(w, "      %-50s %s\n", m, strings.TrimPrefix(b.Memberships[m].Membership, "MEMBERSHIP_"))
			}
		}
	}
	if out.InvokerIAMDisabled {
		fmt.Fprintln(w, "\nThe service's invoker IAM check is disabled: the gateway lets anyone in.")
	}
	if len(out.Guardrails) > 0 {
		fmt.Fprintln(w, "\nGuardrails:")
		for _, gr := range out.Guardrails {
			fmt.Fprintf(w, "  %s\n", gr)
		}
	}
	return nil
}
