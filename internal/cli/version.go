package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// newVersionCmd is `usher version`: the module version and the commit the
// binary was built from, as Go recorded them.
func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print Usher's version and the commit it was built from",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			version, commit, when, modified := "(unknown)", "", "", ""
			if bi, ok := debug.ReadBuildInfo(); ok {
				version = bi.Main.Version // v1.2.3 from go install …@v1.2.3, (devel) from a checkout
				for _, s := range bi.Settings {
					switch s.Key {
					case "vcs.revision":
						commit = s.Value
					case "vcs.time":
						when = s.Value
					case "vcs.modified":
						if s.Value == "true" {
							modified = " (modified)"
						}
					}
				}
			}
			fmt.Fprintf(g.stdout, "usher %s\n", version)
			if commit != "" {
				fmt.Fprintf(g.stdout, "commit %s%s %s\n", commit, modified, when)
			}
			fmt.Fprintf(g.stdout, "%s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}
