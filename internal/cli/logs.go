package cli

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/usher-run/usher/internal/client"
	"github.com/usher-run/usher/internal/logs"
)

func newServiceLogsCmd(g *globals) *cobra.Command {
	group := &cobra.Command{Use: "logs", Short: "Read what a service's instances printed"}
	var limit int
	var revision string
	read := &cobra.Command{
		Use:   "read NAME",
		Short: "Print the newest lines of a service's instances, oldest first",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			q := url.Values{"limit": {strconv.Itoa(limit)}}
			if revision != "" {
				q.Set("revision", revision)
			}
			var out struct {
				Entries []logs.Entry `json:"entries"`
			}
			path := client.ServicePath(cfg.Project, cfg.Region, args[0]) + ":logs?" + q.Encode()
			if err := c.Do(cmd.Context(), http.MethodGet, path, nil, &out); err != nil {
				return err
			}
			return g.print(out.Entries, func(w io.Writer) error {
				for _, e := range out.Entries {
					fmt.Fprintf(w, "%s %s %s %s\n", e.Time.Format(time.RFC3339Nano), e.Revision, e.Instance, e.Text)
				}
				return nil
			})
		},
	}
	read.Flags().IntVar(&limit, "limit", 100, "how many lines at most")
	read.Flags().StringVar(&revision, "revision", "", "only this revision's lines")
	group.AddCommand(read)
	return group
}
