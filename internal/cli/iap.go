package cli

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/client"
	"github.com/usher-run/usher/internal/iam"
)

// newIAPCmd is `usher iap`: sign a browser in to a service behind the
// identity-aware proxy, and manage who may pass (gcloud's `iap web`).
func newIAPCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "iap", Short: "Identity-aware proxy: browser sign-in and access to services with --iap"}
	web := &cobra.Command{Use: "web", Short: "Who may pass the identity-aware proxy of a service (roles/iap.httpsResourceAccessor)"}
	web.AddCommand(newIAPBindingCmd(g, "add-iam-policy-binding", true), newIAPBindingCmd(g, "remove-iam-policy-binding", false), newIAPGetPolicyCmd(g))
	cmd.AddCommand(newIAPLoginCmd(g), web)
	return cmd
}

// iapPolicyPath is the IAP API's name of a Cloud Run service's policy, as
// gcloud builds it: projects/NUMBER/iap_web/cloud_run-REGION/services/NAME.
func iapPolicyPath(cfg client.Config, service string) string {
	return "/v1/projects/" + apis.ProjectNumber(cfg.Project) + "/iap_web/cloud_run-" + url.PathEscape(cfg.Region) + "/services/" + url.PathEscape(service)
}

type iapTarget struct{ resourceType, service string }

func (t *iapTarget) flags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&t.resourceType, "resource-type", "cloud-run", "the kind of resource: cloud-run")
	cmd.Flags().StringVar(&t.service, "service", "", "the Cloud Run service")
}

func (t *iapTarget) check() error {
	if t.resourceType != "cloud-run" {
		return fmt.Errorf("--resource-type=%s is not supported; Usher protects Cloud Run services (--resource-type=cloud-run)", t.resourceType)
	}
	if t.service == "" {
		return fmt.Errorf("--service is required")
	}
	return nil
}

func newIAPBindingCmd(g *globals, use string, add bool) *cobra.Command {
	var t iapTarget
	var member, role string
	cmd := &cobra.Command{
		Use:   use + " --service=NAME --member=MEMBER --role=ROLE",
		Short: "Add or remove who may pass the identity-aware proxy of a service",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := t.check(); err != nil {
				return err
			}
			if member == "" || role == "" {
				return fmt.Errorf("--member and --role are required")
			}
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			p, err := c.ModifyIamPolicy(cmd.Context(), iapPolicyPath(cfg, t.service), func(p *iam.Policy) (bool, error) {
				if add {
					return p.AddBinding(role, member, nil), nil
				}
				return p.RemoveBinding(role, member, nil, true), nil
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stderr, "Updated IAM policy for cloud run [%s].\n", t.service)
			return g.print(p, nil)
		},
	}
	t.flags(cmd)
	cmd.Flags().StringVar(&member, "member", "", "the principal, e.g. user:EMAIL")
	cmd.Flags().StringVar(&role, "role", "roles/iap.httpsResourceAccessor", "the role")
	return cmd
}

func newIAPGetPolicyCmd(g *globals) *cobra.Command {
	var t iapTarget
	cmd := &cobra.Command{
		Use:   "get-iam-policy --service=NAME",
		Short: "Show who may pass the identity-aware proxy of a service",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := t.check(); err != nil {
				return err
			}
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			p, err := c.GetIamPolicy(cmd.Context(), iapPolicyPath(cfg, t.service))
			if err != nil {
				return err
			}
			return g.print(p, nil)
		},
	}
	t.flags(cmd)
	return cmd
}

func newIAPLoginCmd(g *globals) *cobra.Command {
	var noBrowser bool
	cmd := &cobra.Command{
		Use:   "login SERVICE_URL",
		Short: "Print (and open) a one-time link that signs a browser in to a service behind the identity-aware proxy",
		Long: `Prints a one-time link that signs a browser in, as the CLI's principal, to a
service deployed with --iap. The link works once, within 2 minutes; the session
it starts lasts an hour, on that service's host only.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, err := g.client()
			if err != nil {
				return err
			}
			var out struct {
				URL, Principal, ExpireTime string
			}
			if err := c.Do(cmd.Context(), http.MethodPost, "/_iap/signin-codes", map[string]string{"url": strings.TrimSpace(args[0])}, &out); err != nil {
				return err
			}
			fmt.Fprintf(g.stderr, "Open this link to sign in as %s.\nIt works once, until %s:\n\n", out.Principal, out.ExpireTime)
			fmt.Fprintln(g.stdout, out.URL)
			if !noBrowser {
				if err := openBrowser(out.URL); err != nil {
					fmt.Fprintf(g.stderr, "\n(Could not open a browser: %v. Open the link yourself.)\n", err)
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&noBrowser, "no-browser", false, "only print the link; do not open a browser")
	return cmd
}
