package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/usher-run/usher/internal/client"
)

// gcloudAPIs are the API endpoint overrides gcloud needs to reach Usher.
// artifactregistry is there so that `gcloud run deploy --source` reaches
// Usher, which refuses it with a message naming `usher run deploy
// --source`, instead of failing to tunnel to Google (a gcloud crash).
var gcloudAPIs = []string{"run", "serviceusage", "cloudresourcemanager", "iam", "iamcredentials", "iap", "artifactregistry", "logging", "secretmanager"}

var configNameRE = regexp.MustCompile(`^[a-z][-a-z0-9]*$`)

func newGcloudCmd(g *globals) *cobra.Command {
	gc := &cobra.Command{Use: "gcloud", Short: "Point the real gcloud CLI at this Usher server"}
	var name string
	var activate bool
	configure := &cobra.Command{
		Use:   "configure",
		Short: "Write a named gcloud configuration that sends gcloud's Cloud Run, IAM and Resource Manager calls to Usher",
		Long: `Writes a gcloud configuration (in $CLOUDSDK_CONFIG, else ~/.config/gcloud) with every
endpoint override, Usher as gcloud's HTTP proxy (so regional hosts like
us-central1-localhost reach it), the project and the region. With gcloud on PATH it
also signs gcloud in as your account (gcloud auth activate-refresh-token with your CLI
credential, exchanged at this server's /token), so gcloud refreshes its own tokens and
'gcloud auth print-identity-token' works; without gcloud it points gcloud at the access
token file that 'usher serve' keeps fresh. Then use gcloud as usual:

  gcloud --configuration=usher run services list
  gcloud config configurations activate usher   # or make it the default`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !configNameRE.MatchString(name) {
				return fmt.Errorf("--configuration %q: use lowercase letters, digits and dashes, starting with a letter", name)
			}
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			dir, err := gcloudConfigDir()
			if err != nil {
				return err
			}
			// With gcloud on PATH and a CLI credential, gcloud holds the
			// credential as a refresh token and exchanges it at Usher's
			// /token itself: fresh access tokens and identity tokens
			// (gcloud auth print-identity-token) for as long as the
			// credential is valid. Otherwise it reads an access token file.
			gcloudBin, lookErr := exec.LookPath("gcloud")
			refresh := lookErr == nil && cfg.Credential != "" && cfg.Account != ""
			tokenFile, note := "", ""
			if !refresh {
				if tokenFile, note, err = gcloudTokenFile(cmd, c, cfg); err != nil {
					return err
				}
				if lookErr != nil {
					note = strings.TrimSpace(note + "\nNote: gcloud is not on PATH, so the configuration reads an access token file; run `usher gcloud configure` again with gcloud installed to let it refresh its own tokens and print identity tokens.")
				}
			}
			ini, err := gcloudProperties(cfg, tokenFile)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(filepath.Join(dir, "configurations"), 0o700); err != nil {
				return err
			}
			path := filepath.Join(dir, "configurations", "config_"+name)
			if err := client.WriteFileAtomic(path, []byte(ini), 0o600); err != nil {
				return err
			}
			if refresh {
				if err := gcloudActivate(cmd, gcloudBin, dir, name, cfg); err != nil {
					return err
				}
			}
			if activate {
				if err := client.WriteFileAtomic(filepath.Join(dir, "active_config"), []byte(name), 0o600); err != nil {
					return err
				}
			}
			fmt.Fprintf(g.stderr, "Wrote gcloud configuration [%s] to %s.\n", name, path)
			if refresh {
				fmt.Fprintf(g.stderr, "gcloud signs in as [%s] with a refresh token it exchanges at %s/token: `gcloud auth print-identity-token` works.\n", cfg.Account, strings.TrimRight(cfg.Server, "/"))
			}
			if note != "" {
				fmt.Fprintln(g.stderr, note)
			}
			if activate {
				fmt.Fprintf(g.stderr, "It is now gcloud's active configuration: try `gcloud run services list`.\n")
			} else {
				fmt.Fprintf(g.stderr, "Use it with `gcloud --configuration=%s run services list`, or make it the default with `gcloud config configurations activate %s`.\n", name, name)
			}
			return nil
		},
	}
	configure.Flags().StringVar(&name, "configuration", "usher", "name of the gcloud configuration to write")
	configure.Flags().BoolVar(&activate, "activate", false, "also make it gcloud's active configuration")
	gc.AddCommand(configure)
	return gc
}

// gcloudTokenFile returns the token file gcloud should read: the one the
// server keeps fresh, or else a one-off token written now (with a note that
// it expires).
func gcloudTokenFile(cmd *cobra.Command, c *client.Client, cfg client.Config) (string, string, error) {
	if cfg.TokenFile != "" && cfg.Account != "" {
		if _, err := os.Stat(cfg.TokenFile); err == nil {
			return cfg.TokenFile, "", nil
		}
	}
	tok, err := c.AccessToken(cmd.Context())
	if err != nil {
		return "", "", err
	}
	dir, err := gcloudConfigDir()
	if err != nil {
		return "", "", err
	}
	path := filepath.Join(dir, "usher-access-token")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", err
	}
	if err := client.WriteFileAtomic(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", "", err
	}
	note := fmt.Sprintf("Note: the server keeps no token file for this configuration, so %s holds a token that expires at %s; run `usher gcloud configure` again after that.",
		path, time.Now().Add(time.Hour).Format(time.Kitchen))
	return path, note, nil
}

func gcloudConfigDir() (string, error) {
	if d := os.Getenv("CLOUDSDK_CONFIG"); d != "" {
		return d, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", errors.New("no home directory: set CLOUDSDK_CONFIG")
	}
	return filepath.Join(home, ".config", "gcloud"), nil
}

// gcloudActivate stores the CLI credential in gcloud as a refresh token for
// the account (gcloud auth activate-refresh-token), in configuration name.
// The credential goes through standard input, never the command line (which
// other users on the machine can read).
func gcloudActivate(cmd *cobra.Command, gcloudBin, dir, name string, cfg client.Config) error {
	ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
	defer cancel()
	run := exec.CommandContext(ctx, gcloudBin, "auth", "activate-refresh-token", cfg.Account)
	run.Env = append(os.Environ(), "CLOUDSDK_CONFIG="+dir, "CLOUDSDK_ACTIVE_CONFIG_NAME="+name, "CLOUDSDK_CORE_DISABLE_PROMPTS=0")
	run.Stdin = strings.NewReader(cfg.Credential + "\n")
	out, err := run.CombinedOutput()
	if err != nil {
		return fmt.Errorf("gcloud auth activate-refresh-token %s: %v: %s", cfg.Account, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// gcloudProperties renders the configuration file (gcloud's INI format).
func gcloudProperties(cfg client.Config, tokenFile string) (string, error) {
	u, err := url.Parse(cfg.Server)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("the configuration's server %q is not a URL", cfg.Server)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		host, port = u.Host, "80"
	}
	if host == "localhost" {
		host = "127.0.0.1"
	}
	endpoint := strings.TrimRight(cfg.Server, "/") + "/"
	var b strings.Builder
	fmt.Fprintf(&b, "[core]\nproject = %s\nshould_prompt_to_enable_api = false\ndisable_usage_reporting = true\n\n", cfg.Project)
	if tokenFile != "" {
		fmt.Fprintf(&b, "[auth]\naccess_token_file = %s\n\n", tokenFile)
	} else {
		// gcloud's refresh-token exchanges go to Usher, not Google.
		fmt.Fprintf(&b, "[auth]\ntoken_host = %s/token\n\n", strings.TrimRight(cfg.Server, "/"))
	}
	fmt.Fprintf(&b, "[run]\nregion = %s\nplatform = managed\n\n", cfg.Region)
	fmt.Fprintf(&b, "[proxy]\ntype = http\naddress = %s\nport = %s\n\n", host, port)
	b.WriteString("[api_endpoint_overrides]\n")
	for _, api := range gcloudAPIs {
		fmt.Fprintf(&b, "%s = %s\n", api, endpoint)
	}
	return b.String(), nil
}
