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
	quiet       bool
	stdin       io.Reader
	stdout      io.Writer
	stderr      io.Writer
}

// Execute runs the CLI and returns the process exit code.
func Execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g := &globals{stdin: os.Stdin}
	// Everything printed goes through termSafe (termsafe.go): no stored
	// string reaches the terminal as a control sequence.
	out := newTermSafe(stdout, func() bool { return g.format == "json" })
	errOut := newTermSafe(stderr, nil)
	defer out.Flush()
	defer errOut.Flush()
	g.stdout, g.stderr = out, errOut
	root := newRoot(g)
	helpErr := likeGcloud(root) // suggest.go: unknown commands and flags fail with a suggestion
	root.SetArgs(args)
	root.SetOut(out)
	root.SetErr(errOut)
	err := root.ExecuteContext(ctx)
	if err == nil {
		err = helpErr()
	}
	if err != nil {
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
		PersistentPreRunE: func(*cobra.Command, []string) error {
			if g.format == "" {
				return nil
			}
			_, err := parseFormat(g.format) // refused before anything is done
			return err
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.config, "config", "", "CLI configuration file (default $USHER_CONFIG, else ~/.config/usher/config.json)")
	pf.StringVar(&g.project, "project", "", "project ID (default: the configuration's)")
	pf.StringVar(&g.region, "region", "", "region (default: the configuration's)")
	pf.StringVar(&g.format, "format", "", "output format: json, yaml, value(KEY,...), table(KEY[:label=NAME],...) or csv(KEY,...); KEY is a path like spec.template.spec.containers[0].image")
	pf.BoolVarP(&g.quiet, "quiet", "q", false, "answer every prompt with its default and skip confirmations (deletes need it without a terminal)")
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

// print writes v in the requested --format, or calls human when no format
// was asked for (YAML when there is no human form).
func (g *globals) print(v any, human func(w io.Writer) error) error {
	if g.format == "" {
		if human == nil {
			return printYAML(g.stdout, v)
		}
		return human(g.stdout)
	}
	f, err := parseFormat(g.format) // format.go
	if err != nil {
		return err
	}
	return f.render(g.stdout, v)
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

// table prints rows under a header, aligned.
func table(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// tableRows prints rows aligned, without a header.
func tableRows(w io.Writer, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}
