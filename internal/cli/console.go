package cli

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"

	"github.com/spf13/cobra"
)

func newConsoleCmd(g *globals) *cobra.Command {
	var noBrowser bool
	var as string
	cmd := &cobra.Command{
		Use:   "console",
		Short: "Sign in to the web console: print (and open) a one-time sign-in link",
		Long: `Prints a one-time link that signs a browser in to Usher's web console as the
CLI's principal, and opens it in the default browser unless --no-browser is
given. The link works once, within 2 minutes; the session lasts 12 hours.

--as user:EMAIL (or serviceAccount:EMAIL) signs in as another principal, to see
the console as they would. It needs resourcemanager.projects.setIamPolicy on
every project of the server (an owner's permission), and is recorded in the
audit trail as console.impersonate.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			var out struct {
				Principal  string `json:"principal"`
				Path       string `json:"path"`
				ExpireTime string `json:"expireTime"`
			}
			body := map[string]string{"project": cfg.Project, "principal": as}
			if err := c.Do(cmd.Context(), http.MethodPost, "/console/api/sign-in-codes", body, &out); err != nil {
				return err
			}
			link := strings.TrimRight(cfg.Server, "/") + out.Path
			fmt.Fprintf(g.stderr, "Open this link to sign in to the Usher console as %s.\nIt works once, until %s:\n\n", out.Principal, out.ExpireTime)
			fmt.Fprintln(g.stdout, link)
			if !noBrowser {
				if err := openBrowser(link); err != nil {
					fmt.Fprintf(g.stderr, "\n(Could not open a browser: %v. Open the link yourself.)\n", err)
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&noBrowser, "no-browser", false, "only print the link; do not open a browser")
	cmd.Flags().StringVar(&as, "as", "", "sign in as this principal (user:EMAIL or serviceAccount:EMAIL); owners only")
	return cmd
}

// openBrowser asks the desktop to open url, without waiting for the browser.
func openBrowser(url string) error {
	var name string
	switch runtime.GOOS {
	case "darwin":
		name = "open"
	case "windows":
		return exec.Command("rundll32", "url.dll,FileProtocolHandler", url).Start()
	default:
		if os.Getenv("DISPLAY") == "" && os.Getenv("WAYLAND_DISPLAY") == "" {
			return fmt.Errorf("no graphical display")
		}
		name = "xdg-open"
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return err
	}
	cmd := exec.Command(path, url)
	if err := cmd.Start(); err != nil {
		return err
	}
	go cmd.Wait()
	return nil
}
