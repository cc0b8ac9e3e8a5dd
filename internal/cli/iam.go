package cli

import (
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/spf13/cobra"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/client"
)

func newIAMCmd(g *globals) *cobra.Command {
	iamCmd := &cobra.Command{Use: "iam", Short: "Manage IAM service accounts"}
	sa := &cobra.Command{Use: "service-accounts", Short: "Manage service accounts"}
	saPath := func(cfg client.Config, email string) (string, string) {
		return client.ServiceAccountPath(cfg.Project, email), "service account [" + email + "]"
	}
	sa.AddCommand(newSACreateCmd(g), newSAListCmd(g), newSADeleteCmd(g),
		newSAMethodCmd(g, "disable", "Disable a service account: its tokens stop working at once; its grants stay", "Disabled"),
		newSAMethodCmd(g, "enable", "Enable a disabled service account", "Enabled"),
		newSAMethodCmd(g, "undelete", "Undelete a service account deleted in the last 30 days, by its unique ID, with its grants", "Restored"),
		newPolicyBindingCmd(g, "add-iam-policy-binding", true, saPath),
		newPolicyBindingCmd(g, "remove-iam-policy-binding", false, saPath),
		newGetPolicyCmd(g, saPath))
	iamCmd.AddCommand(sa, newRolesCmd(g))
	iamCmd.AddCommand(newTroubleshootCmd(g)) // troubleshoot.go
	return iamCmd
}

func newSACreateCmd(g *globals) *cobra.Command {
	var displayName, description string
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a service account NAME@PROJECT.iam.gserviceaccount.com",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			body := map[string]any{"accountId": args[0], "serviceAccount": map[string]string{"displayName": displayName, "description": description}}
			var out apis.ServiceAccount
			if err := c.Do(cmd.Context(), http.MethodPost, client.ServiceAccountsPath(cfg.Project), body, &out); err != nil {
				return err
			}
			fmt.Fprintf(g.stderr, "Created service account [%s].\n", args[0])
			if g.format != "" {
				return g.print(out, nil)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&displayName, "display-name", "", "display name")
	cmd.Flags().StringVar(&description, "description", "", "description")
	return cmd
}

func newSAListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List service accounts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			var out struct {
				Accounts []apis.ServiceAccount `json:"accounts"`
			}
			if err := c.Do(cmd.Context(), http.MethodGet, client.ServiceAccountsPath(cfg.Project), nil, &out); err != nil {
				return err
			}
			return g.print(out.Accounts, func(w io.Writer) error {
				var rows [][]string
				for _, a := range out.Accounts {
					rows = append(rows, []string{a.DisplayName, a.Email, strings.ToUpper(fmt.Sprint(a.Disabled))})
				}
				return table(w, []string{"DISPLAY NAME", "EMAIL", "DISABLED"}, rows)
			})
		},
	}
}

func newSADeleteCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "delete EMAIL",
		Short: "Delete a service account",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			if err := g.confirm(fmt.Sprintf("Service account [%s] will be deleted.", args[0])); err != nil {
				return err
			}
			if err := c.Do(cmd.Context(), http.MethodDelete, client.ServiceAccountPath(cfg.Project, args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(g.stderr, "Deleted service account [%s].\n", args[0])
			return nil
		},
	}
	return cmd
}

// newSAMethodCmd runs a custom method (disable, enable, undelete) on one
// account, named by email or (undelete) unique ID, as gcloud does.
func newSAMethodCmd(g *globals, method, short, done string) *cobra.Command {
	use := method + " EMAIL"
	if method == "undelete" {
		use = method + " UNIQUE_ID"
	}
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			project := cfg.Project
			if method == "undelete" {
				project = "-"
			}
			if err := c.Do(cmd.Context(), http.MethodPost, client.ServiceAccountPath(project, args[0])+":"+method, map[string]any{}, nil); err != nil {
				return err
			}
			fmt.Fprintf(g.stderr, "%s service account [%s].\n", done, args[0])
			return nil
		},
	}
}

func newProjectsCmd(g *globals) *cobra.Command {
	projects := &cobra.Command{Use: "projects", Short: "Manage projects and their IAM policies"}
	path := func(_ client.Config, project string) (string, string) {
		return client.ProjectPath(project), "project [" + project + "]"
	}
	projects.AddCommand(
		newGetPolicyCmd(g, path),
		newPolicyBindingCmd(g, "add-iam-policy-binding", true, path),
		newPolicyBindingCmd(g, "remove-iam-policy-binding", false, path),
		newSetPolicyCmd(g, path),
	)
	projects.AddCommand(newProjectsLifecycleCmds(g)...) // projects.go
	return projects
}
