package cli

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/usher-run/usher/internal/client"
)

// role is a role as the IAM API answers it.
type role struct {
	Name                string   `json:"name"`
	Title               string   `json:"title,omitempty"`
	Description         string   `json:"description,omitempty"`
	IncludedPermissions []string `json:"includedPermissions,omitempty"`
	Stage               string   `json:"stage,omitempty"`
	Etag                string   `json:"etag,omitempty"`
	Deleted             bool     `json:"deleted,omitempty"`
}

// newRolesCmd is `usher iam roles`: gcloud's custom role commands on a
// project (--project, else the configuration's), plus describe and list of
// predefined roles.
func newRolesCmd(g *globals) *cobra.Command {
	roles := &cobra.Command{Use: "roles", Short: "Manage custom IAM roles of a project"}
	roles.AddCommand(newRoleCreateCmd(g), newRoleListCmd(g), newRoleDescribeCmd(g), newRoleUpdateCmd(g),
		newRoleDeleteCmd(g), newRoleUndeleteCmd(g))
	return roles
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// roleID is ROLE_ID, also accepted as projects/P/roles/ID.
func roleID(arg string) string {
	if i := strings.LastIndex(arg, "/roles/"); i >= 0 && strings.HasPrefix(arg, "projects/") {
		return arg[i+len("/roles/"):]
	}
	return arg
}

func newRoleCreateCmd(g *globals) *cobra.Command {
	var title, description, stage, permissions string
	cmd := &cobra.Command{
		Use:   "create ROLE_ID --permissions=PERM,… [--title=TITLE] [--description=DESC] [--stage=STAGE]",
		Short: "Create a custom role in a project",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			id := roleID(args[0])
			body := map[string]any{"roleId": id, "role": map[string]any{
				"title": title, "description": description, "stage": strings.ToUpper(stage),
				"includedPermissions": splitList(permissions)}}
			if title == "" {
				body["role"].(map[string]any)["title"] = id // gcloud's default
			}
			var out role
			if err := c.Do(cmd.Context(), http.MethodPost, client.RolesPath(cfg.Project), body, &out); err != nil {
				return err
			}
			fmt.Fprintf(g.stderr, "Created role [%s].\n", id)
			return g.print(out, nil)
		},
	}
	f := cmd.Flags()
	f.StringVar(&title, "title", "", "the role's title (default: ROLE_ID)")
	f.StringVar(&description, "description", "", "the role's description")
	f.StringVar(&stage, "stage", "", "launch stage: ALPHA (default), BETA, GA, DEPRECATED, DISABLED, EAP")
	f.StringVar(&permissions, "permissions", "", "comma-separated permissions, e.g. run.routes.invoke,run.services.get")
	return cmd
}

func newRoleListCmd(g *globals) *cobra.Command {
	var showDeleted bool
	cmd := &cobra.Command{
		Use:   "list [--project=P] [--show-deleted]",
		Short: "List a project's custom roles (without --project: the predefined roles)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			path := "/v1/roles"
			if g.project != "" {
				path = client.RolesPath(cfg.Project)
			}
			q := url.Values{"view": {"FULL"}}
			if showDeleted {
				q.Set("showDeleted", "true")
			}
			var out struct {
				Roles []role `json:"roles"`
			}
			if err := c.Do(cmd.Context(), http.MethodGet, path+"?"+q.Encode(), nil, &out); err != nil {
				return err
			}
			if out.Roles == nil {
				out.Roles = []role{}
			}
			return g.print(out.Roles, func(w io.Writer) error {
				var rows [][]string
				for _, r := range out.Roles {
					stage := r.Stage
					if r.Deleted {
						stage += " (deleted)"
					}
					rows = append(rows, []string{r.Name, r.Title, stage, fmt.Sprint(len(r.IncludedPermissions))})
				}
				return table(w, []string{"NAME", "TITLE", "STAGE", "PERMISSIONS"}, rows)
			})
		},
	}
	cmd.Flags().BoolVar(&showDeleted, "show-deleted", false, "include deleted custom roles")
	return cmd
}

func newRoleDescribeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "describe ROLE_ID|roles/PREDEFINED",
		Short: "Show a custom role of a project, or a predefined role",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			var out role
			if err := c.Do(cmd.Context(), http.MethodGet, client.RolePath(cfg.Project, args[0]), nil, &out); err != nil {
				return err
			}
			return g.print(out, nil)
		},
	}
}

func newRoleUpdateCmd(g *globals) *cobra.Command {
	var title, description, stage, permissions, add, remove string
	cmd := &cobra.Command{
		Use:   "update ROLE_ID [--title] [--description] [--stage] [--permissions | --add-permissions --remove-permissions]",
		Short: "Update a custom role",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			f := cmd.Flags()
			if f.Changed("permissions") && (add != "" || remove != "") {
				return fmt.Errorf("--permissions cannot be combined with --add-permissions or --remove-permissions")
			}
			path := client.RolePath(cfg.Project, roleID(args[0]))
			var cur role
			if err := c.Do(cmd.Context(), http.MethodGet, path, nil, &cur); err != nil {
				return err
			}
			body := map[string]any{"etag": cur.Etag}
			var mask []string
			set := func(field string, v any) { body[field] = v; mask = append(mask, field) }
			if f.Changed("title") {
				set("title", title)
			}
			if f.Changed("description") {
				set("description", description)
			}
			if f.Changed("stage") {
				set("stage", strings.ToUpper(stage))
			}
			perms := slices.Clone(cur.IncludedPermissions)
			switch {
			case f.Changed("permissions"):
				perms = splitList(permissions)
			case add != "" || remove != "":
				for _, p := range splitList(add) {
					if !slices.Contains(perms, p) {
						perms = append(perms, p)
					}
				}
				perms = slices.DeleteFunc(perms, func(p string) bool { return slices.Contains(splitList(remove), p) })
			}
			if f.Changed("permissions") || add != "" || remove != "" {
				slices.Sort(perms)
				set("includedPermissions", perms)
			}
			if len(mask) == 0 {
				return fmt.Errorf("nothing to update: pass --title, --description, --stage, --permissions, --add-permissions or --remove-permissions")
			}
			var out role
			if err := c.Do(cmd.Context(), http.MethodPatch, path+"?updateMask="+url.QueryEscape(strings.Join(mask, ",")), body, &out); err != nil {
				return err
			}
			fmt.Fprintf(g.stderr, "Updated role [%s].\n", roleID(args[0]))
			return g.print(out, nil)
		},
	}
	f := cmd.Flags()
	f.StringVar(&title, "title", "", "new title")
	f.StringVar(&description, "description", "", "new description")
	f.StringVar(&stage, "stage", "", "new launch stage")
	f.StringVar(&permissions, "permissions", "", "replace the permissions (comma-separated)")
	f.StringVar(&add, "add-permissions", "", "permissions to add (comma-separated)")
	f.StringVar(&remove, "remove-permissions", "", "permissions to remove (comma-separated)")
	return cmd
}

func newRoleDeleteCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "delete ROLE_ID",
		Short: "Delete a custom role (it can be undeleted; its bindings grant nothing meanwhile)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.confirm(fmt.Sprintf("Role [%s] will be deleted.", args[0])); err != nil {
				return err
			}
			return roleStateChange(cmd, g, args[0], http.MethodDelete, "", "deleted")
		},
	}
	return cmd
}

func newRoleUndeleteCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "undelete ROLE_ID",
		Short: "Restore a deleted custom role",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return roleStateChange(cmd, g, args[0], http.MethodPost, ":undelete", "undeleted")
		},
	}
}

func roleStateChange(cmd *cobra.Command, g *globals, arg, method, suffix, done string) error {
	c, cfg, err := g.client()
	if err != nil {
		return err
	}
	id := roleID(arg)
	var body any
	if suffix != "" {
		body = map[string]any{}
	}
	var out role
	if err := c.Do(cmd.Context(), method, client.RolePath(cfg.Project, id)+suffix, body, &out); err != nil {
		return err
	}
	fmt.Fprintf(g.stderr, "%s role [%s].\n", strings.ToUpper(done[:1])+done[1:], id)
	return g.print(out, nil)
}
