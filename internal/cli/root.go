// Package cli is the usher command line: gcloud's nouns, verbs and flags
// (run, iam, projects, auth) plus serve. Each command parses flags, calls the
// admin API through package client, and prints the result; errors end as one
// line on stderr and a non-zero exit.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/usher-run/usher/internal/client"
)

// globals are the flags every command takes.
type globals struct {
	config  string
	project string
	region  string
	format  string
	// impersonate makes every call as this service account (gcloud's
	// --impersonate-service-account).
	impersonate string
	// httpTimeout bounds each call to the server (gcloud's --http-timeout).
	httpTimeout time.Duration
	stdout      io.Writer
	stderr      io.Writer
}

// Execute runs the CLI and returns the process exit code.
func Execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g := &globals{}
	// Everything printed goes through termSafe (termsafe.go): no stored
	// string reaches the terminal as a control sequence.
	out := newTermSafe(stdout, func() bool { return g.format == "json" })
	errOut := newTermSafe(stderr, nil)
	defer out.Flush()
	defer errOut.Flush()
	g.stdout, g.stderr = out, errOut
	root := newRoot(g)
	root.SetArgs(args)
	root.SetOut(out)
	root.SetErr(errOut)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(errOut, "ERROR: "+oneLine(err))
		return 1
	}
	return 0
}

// oneLine renders an error as a single line.
func oneLine(err error) string {
	var apiErr *client.APIError
	msg := err.Error()
	if errors.As(err, &apiErr) {
		msg = apiErr.Status + ": " + apiErr.Message
	}
	return strings.Join(strings.Fields(msg), " ")
}

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:           "usher",
		Short:         "Usher: a self-hosted Cloud Run with Cloud Run's invocation IAM",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.config, "config", "", "CLI configuration file (default $USHER_CONFIG, else ~/.config/usher/config.json)")
	pf.StringVar(&g.project, "project", "", "project ID (default: the configuration's)")
	pf.StringVar(&g.region, "region", "", "region (default: the configuration's)")
	pf.StringVar(&g.format, "format", "", "output format: json, yaml, or value(FIELD.PATH)")
	pf.StringVar(&g.impersonate, "impersonate-service-account", "", "make every call as this service account (needs Service Account Token Creator on it)")
	pf.DurationVar(&g.httpTimeout, "http-timeout", 2*time.Minute, "give up on a call to the server after this long (0: never)")
	pf.String("platform", "managed", "accepted for gcloud compatibility; Usher is the managed platform")
	root.AddCommand(newServeCmd(g), newRunCmd(g), newIAMCmd(g), newProjectsCmd(g), newAuthCmd(g), newGcloudCmd(g), newConsoleCmd(g), newIAPCmd(g))
	root.AddCommand(newOrgPoliciesCmd(g))              // orgpolicies.go
	root.AddCommand(newLoggingCmd(g))                  // logging.go
	root.AddCommand(newBackupCmd(g), newRestoreCmd(g)) // backup.go
	root.AddCommand(newVersionCmd(g))                  // version.go
	return root
}

// configPath resolves --config, then $USHER_CONFIG, then the default path.
func (g *globals) configPath() (string, error) {
	if g.config != "" {
		return g.config, nil
	}
	if p := os.Getenv("USHER_CONFIG"); p != "" {
		return p, nil
	}
	return client.DefaultConfigPath()
}

// client loads the configuration and applies --project and --region.
func (g *globals) client() (*client.Client, client.Config, error) {
	path, err := g.configPath()
	if err != nil {
		return nil, client.Config{}, err
	}
	cfg, err := client.LoadConfig(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, cfg, fmt.Errorf("no configuration at %s: start `usher serve` once (it writes one), or pass --config", path)
	}
	if err != nil {
		return nil, cfg, err
	}
	if g.project != "" {
		cfg.Project = g.project
	}
	if g.region != "" {
		cfg.Region = g.region
	}
	if cfg.Project == "" {
		return nil, cfg, errors.New("no project: pass --project or set one in the configuration")
	}
	c := client.New(cfg)
	c.SetTimeout(g.httpTimeout)
	c.Impersonate(g.impersonate)
	return c, cfg, nil
}

// print writes v in the requested format, or calls human when no format was
// asked for.
func (g *globals) print(v any, human func(w io.Writer) error) error {
	switch f := g.format; {
	case f == "json":
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(g.stdout, string(b))
		return err
	case f == "yaml" || (f == "" && human == nil):
		return printYAML(g.stdout, v)
	case strings.HasPrefix(f, "value(") && strings.HasSuffix(f, ")"):
		return printValue(g.stdout, v, strings.TrimSuffix(strings.TrimPrefix(f, "value("), ")"))
	case f == "":
		return human(g.stdout)
	}
	return fmt.Errorf("unknown --format %q: use json, yaml or value(FIELD)", g.format)
}

func printYAML(w io.Writer, v any) error {
	j, err := json.Marshal(v)
	if err != nil {
		return err
	}
	// JSON leaves DEL and C1 controls raw, which the YAML reader refuses:
	// escape them as JSON does C0 (same value, termsafe.go).
	y, err := yaml.JSONToYAML(escapeControls(j, true))
	if err != nil {
		return err
	}
	_, err = w.Write(y)
	return err
}

// printValue prints the fields at dotted paths (comma-separated), tab
// separated, one line per item when v is a list — gcloud's value() format.
func printValue(w io.Writer, v any, paths string) error {
	j, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var doc any
	if err := json.Unmarshal(j, &doc); err != nil {
		return err
	}
	items, ok := doc.([]any)
	if !ok {
		items = []any{doc}
	}
	for _, item := range items {
		var cols []string
		for _, p := range strings.Split(paths, ",") {
			cols = append(cols, lookupPath(item, strings.TrimSpace(p)))
		}
		fmt.Fprintln(w, strings.Join(cols, "\t"))
	}
	return nil
}

func lookupPath(doc any, path string) string {
	cur := doc
	for _, part := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return ""
		}
		cur = m[part]
	}
	switch v := cur.(type) {
	case nil:
		return ""
	case string:
		return v
	case []any:
		var out []string
		for _, e := range v {
			b, _ := json.Marshal(e)
			out = append(out, strings.Trim(string(b), `"`))
		}
		return strings.Join(out, ";")
	default:
		b, _ := json.Marshal(v)
		return string(b)
	}
}

// table prints rows under a header, aligned.
func table(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}
