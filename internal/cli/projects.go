package cli

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/usher-run/usher/internal/client"
	"github.com/usher-run/usher/internal/state"
)

// Projects' lifecycle, as gcloud projects create|list|describe|update|
// delete|undelete (Resource Manager v1).

func newProjectsLifecycleCmds(g *globals) []*cobra.Command {
	return []*cobra.Command{newProjectCreateCmd(g), newProjectListCmd(g), newProjectDescribeCmd(g),
		newProjectUpdateCmd(g), newProjectStateCmd(g, "delete"), newProjectStateCmd(g, "undelete")}
}

func newProjectCreateCmd(g *globals) *cobra.Command {
	var name string
	var labels map[string]string
	var setDefault bool
	cmd := &cobra.Command{
		Use:   "create PROJECT_ID",
		Short: "Create a project; you become its owner (needs resourcemanager.projects.create on the server's root project)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, err := g.client()
			if err != nil {
				return err
			}
			var op struct {
				Response state.Project `json:"response"`
			}
			body := map[string]any{"projectId": args[0], "name": name, "labels": labels}
			if err := c.Do(cmd.Context(), http.MethodPost, "/v1/projects", body, &op); err != nil {
				return err
			}
			fmt.Fprintf(g.stderr, "Created project [%s].\n", args[0])
			if setDefault {
				if err := g.setDefaultProject(args[0]); err != nil {
					return err
				}
				fmt.Fprintf(g.stderr, "Updated the configuration's project to [%s].\n", args[0])
			}
			return g.print(op.Response, nil)
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "display name (default: the ID)")
	cmd.Flags().StringToStringVar(&labels, "labels", nil, "labels, KEY=VALUE,...")
	cmd.Flags().BoolVar(&setDefault, "set-as-default", false, "make it the configuration's project")
	return cmd
}

func newProjectListCmd(g *globals) *cobra.Command {
	var filter string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the projects you may see (active ones unless --filter names lifecycleState)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, _, err := g.client()
			if err != nil {
				return err
			}
			f := "lifecycleState:ACTIVE"
			switch {
			case strings.Contains(filter, "lifecycleState"):
				f = filter
			case filter != "":
				f += " AND (" + filter + ")"
			}
			var out struct {
				Projects []state.Project `json:"projects"`
			}
			if err := c.Do(cmd.Context(), http.MethodGet, "/v1/projects?filter="+url.QueryEscape(f), nil, &out); err != nil {
				return err
			}
			return g.print(out.Projects, func(w io.Writer) error {
				var rows [][]string
				for _, p := range out.Projects {
					rows = append(rows, []string{p.ProjectID, p.Name, p.ProjectNumber})
				}
				return table(w, []string{"PROJECT_ID", "NAME", "PROJECT_NUMBER"}, rows)
			})
		},
	}
	cmd.Flags().StringVar(&filter, "filter", "", `server-side filter, e.g. "labels.env:dev" or "name:team*"`)
	return cmd
}

func newProjectDescribeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "describe PROJECT_ID_OR_NUMBER",
		Short: "Show a project (a deleted one too)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, err := g.client()
			if err != nil {
				return err
			}
			var p state.Project
			if err := c.Do(cmd.Context(), http.MethodGet, client.ProjectPath(args[0]), nil, &p); err != nil {
				return err
			}
			return g.print(p, nil)
		},
	}
}

func newProjectUpdateCmd(g *globals) *cobra.Command {
	var name string
	var labels map[string]string
	var clearLabels bool
	cmd := &cobra.Command{
		Use:   "update PROJECT_ID",
		Short: "Change a project's name or labels",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, err := g.client()
			if err != nil {
				return err
			}
			var p state.Project
			if err := c.Do(cmd.Context(), http.MethodGet, client.ProjectPath(args[0]), nil, &p); err != nil {
				return err
			}
			if name != "" {
				p.Name = name
			}
			if clearLabels {
				p.Labels = nil
			}
			for k, v := range labels {
				if p.Labels == nil {
					p.Labels = map[string]string{}
				}
				p.Labels[k] = v
			}
			if err := c.Do(cmd.Context(), http.MethodPut, client.ProjectPath(args[0]), p, &p); err != nil {
				return err
			}
			fmt.Fprintf(g.stderr, "Updated project [%s].\n", args[0])
			return g.print(p, nil)
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "new display name")
	cmd.Flags().StringToStringVar(&labels, "update-labels", nil, "labels to add or change, KEY=VALUE,...")
	cmd.Flags().BoolVar(&clearLabels, "clear-labels", false, "remove every label (before --update-labels)")
	return cmd
}

// newProjectStateCmd is delete or undelete.
func newProjectStateCmd(g *globals, method string) *cobra.Command {
	short := "Delete a project: nothing in it is served or usable until it is undeleted"
	if method == "undelete" {
		short = "Restore a deleted project and everything in it"
	}
	return &cobra.Command{
		Use:   method + " PROJECT_ID",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, err := g.client()
			if err != nil {
				return err
			}
			verb, path := http.MethodPost, client.ProjectPath(args[0])+":undelete"
			if method == "delete" {
				if err := g.confirm(fmt.Sprintf("Project [%s] will be deleted: its services stop answering and its service accounts stop working.", args[0])); err != nil {
					return err
				}
				verb, path = http.MethodDelete, client.ProjectPath(args[0])
			}
			if err := c.Do(cmd.Context(), verb, path, map[string]any{}, nil); err != nil {
				return err
			}
			if method == "delete" {
				fmt.Fprintf(g.stderr, "Deleted project [%s].\n\nYou can undo this by running:\n    $ usher projects undelete %s\n", args[0], args[0])
			} else {
				fmt.Fprintf(g.stderr, "Restored project [%s].\n", args[0])
			}
			return nil
		},
	}
}

// setDefaultProject makes project the configuration's project.
func (g *globals) setDefaultProject(project string) error {
	path, err := g.configPath()
	if err != nil {
		return err
	}
	cfg, err := client.LoadConfig(path)
	if err != nil {
		return err
	}
	cfg.Project = project
	return client.WriteConfig(path, cfg)
}
