package cli

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sort"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/client"
)

// latestKey names the "latest ready revision" target in --to-revisions, as
// gcloud spells it.
const latestKey = "LATEST"

func newUpdateTrafficCmd(g *globals) *cobra.Command {
	var toRevisions, toTags, setTags map[string]string
	var toLatest, clearTags bool
	var removeTags []string
	cmd := &cobra.Command{
		Use:   "update-traffic NAME",
		Short: "Split traffic between revisions, or send it all to the latest",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			s, err := c.GetService(ctx, cfg.Project, cfg.Region, args[0])
			if err != nil {
				return err
			}
			split := currentSplit(s)
			tags := currentTags(s)
			switch {
			case toLatest:
				split = map[string]int64{latestKey: 100}
			case len(toRevisions) > 0 || len(toTags) > 0:
				want := map[string]int64{}
				for rev, p := range toRevisions {
					n, err := percent(rev, p)
					if err != nil {
						return err
					}
					want[rev] = n
				}
				for tag, p := range toTags {
					rev, ok := tags[tag]
					if !ok {
						return fmt.Errorf("--to-tags: service [%s] has no tag %q", args[0], tag)
					}
					n, err := percent(tag, p)
					if err != nil {
						return err
					}
					want[rev] += n
				}
				if split, err = resplit(split, want); err != nil {
					return err
				}
			}
			if clearTags {
				tags = map[string]string{}
			}
			for _, t := range removeTags {
				delete(tags, t)
			}
			for tag, rev := range setTags {
				tags[tag] = rev
			}
			s.Spec.Traffic = trafficTargets(split, tags)
			s.Status = apis.ServiceStatus{}
			if _, err := c.ReplaceService(ctx, cfg.Project, cfg.Region, s); err != nil {
				return err
			}
			ready, err := c.WaitReady(ctx, cfg.Project, cfg.Region, args[0])
			if err != nil {
				return err
			}
			if !ready.Ready() {
				return fmt.Errorf("updating traffic failed: %s", readyMessage(ready))
			}
			return g.print(ready.Status.Traffic, func(w io.Writer) error {
				fmt.Fprintf(w, "URL: %s\nTraffic:\n", ready.Status.URL)
				for _, t := range ready.Status.Traffic {
					line := fmt.Sprintf("  %3d%% %s", t.Percent, t.RevisionName)
					if t.LatestRevision != nil && *t.LatestRevision {
						line = fmt.Sprintf("  %3d%% LATEST (currently %s)", t.Percent, t.RevisionName)
					}
					if t.Tag != "" {
						line += fmt.Sprintf("\n        %s: %s", t.Tag, t.URL)
					}
					fmt.Fprintln(w, line)
				}
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringToStringVar(&toRevisions, "to-revisions", nil, "REVISION=PERCENT,… (LATEST for the latest ready revision); unnamed revisions share the rest in proportion")
	f.StringToStringVar(&toTags, "to-tags", nil, "TAG=PERCENT,…: like --to-revisions, by tag")
	f.BoolVar(&toLatest, "to-latest", false, "send all traffic to the latest ready revision, now and after every deploy")
	f.StringToStringVar(&setTags, "set-tags", nil, "TAG=REVISION,…: give revisions a tag URL")
	f.StringSliceVar(&removeTags, "remove-tags", nil, "TAG,…: remove tags")
	f.BoolVar(&clearTags, "clear-tags", false, "remove every tag")
	return cmd
}

func percent(name, v string) (int64, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > 100 {
		return 0, fmt.Errorf("percent for %s must be a whole number from 0 to 100, got %q", name, v)
	}
	return n, nil
}

// currentSplit is the service's spec traffic as revision (or LATEST) → percent.
func currentSplit(s *apis.Service) map[string]int64 {
	out := map[string]int64{}
	for _, t := range s.Spec.Traffic {
		if t.Percent == 0 {
			continue
		}
		if t.LatestRevision != nil && *t.LatestRevision {
			out[latestKey] += t.Percent
		} else {
			out[t.RevisionName] += t.Percent
		}
	}
	return out
}

// currentTags maps tag → revision.
func currentTags(s *apis.Service) map[string]string {
	out := map[string]string{}
	for _, t := range s.Status.Traffic {
		if t.Tag != "" {
			out[t.Tag] = t.RevisionName
		}
	}
	for _, t := range s.Spec.Traffic {
		if t.Tag != "" && t.RevisionName != "" {
			out[t.Tag] = t.RevisionName
		}
	}
	return out
}

// resplit sets the percents in want and shares what is left among the other
// current targets in proportion to their shares, as gcloud does.
func resplit(current, want map[string]int64) (map[string]int64, error) {
	var assigned int64
	for _, p := range want {
		assigned += p
	}
	if assigned > 100 {
		return nil, fmt.Errorf("the percentages add up to %d, more than 100", assigned)
	}
	out := map[string]int64{}
	for k, p := range want {
		if p > 0 {
			out[k] = p
		}
	}
	rest := 100 - assigned
	if rest == 0 {
		return out, nil
	}
	var others []string
	var otherTotal int64
	for k, p := range current {
		if _, named := want[k]; !named && p > 0 {
			others = append(others, k)
			otherTotal += p
		}
	}
	if otherTotal == 0 {
		return nil, fmt.Errorf("the percentages add up to %d, and no other revision serves traffic to take the remaining %d", assigned, rest)
	}
	sort.Strings(others)
	left := rest
	for i, k := range others {
		share := rest * current[k] / otherTotal
		if i == len(others)-1 {
			share = left
		}
		left -= share
		if share > 0 {
			out[k] += share
		}
	}
	return out, nil
}

// trafficTargets renders a split and tags as spec.traffic.
func trafficTargets(split map[string]int64, tags map[string]string) []apis.TrafficTarget {
	var out []apis.TrafficTarget
	keys := make([]string, 0, len(split))
	for k := range split {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		t := apis.TrafficTarget{Percent: split[k]}
		if k == latestKey {
			latest := true
			t.LatestRevision = &latest
		} else {
			t.RevisionName = k
		}
		out = append(out, t)
	}
	tagNames := make([]string, 0, len(tags))
	for tag := range tags {
		tagNames = append(tagNames, tag)
	}
	sort.Strings(tagNames)
	for _, tag := range tagNames {
		out = append(out, apis.TrafficTarget{RevisionName: tags[tag], Tag: tag})
	}
	return out
}

func readyMessage(s *apis.Service) string {
	for _, c := range s.Status.Conditions {
		if c.Type == apis.ConditionReady {
			return c.Message
		}
	}
	return "the service is not ready"
}

// pinTraffic turns a service's current traffic into explicit revision
// targets, so a deploy with --no-traffic leaves it where it is.
func pinTraffic(s *apis.Service) []apis.TrafficTarget {
	var out []apis.TrafficTarget
	for _, t := range s.Status.Traffic {
		out = append(out, apis.TrafficTarget{RevisionName: t.RevisionName, Percent: t.Percent, Tag: t.Tag})
	}
	return out
}

// nextRevisionName names the revision a deploy will create, so a tag can
// point at it before it exists (gcloud does the same).
func nextRevisionName(s *apis.Service) string {
	const letters = "abcdefghijklmnopqrstuvwxyz"
	suffix := []byte{letters[rand.IntN(26)], letters[rand.IntN(26)], letters[rand.IntN(26)]}
	return fmt.Sprintf("%s-%05d-%s", s.Metadata.Name, s.Metadata.Generation+1, suffix)
}

func newRevisionsDescribeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "describe REVISION",
		Short: "Show a revision",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			var rv apis.Revision
			if err := c.Do(cmd.Context(), http.MethodGet, client.RevisionsPath(cfg.Project, cfg.Region)+"/"+url.PathEscape(args[0]), nil, &rv); err != nil {
				return err
			}
			return g.print(&rv, nil)
		},
	}
}

func newRevisionsDeleteCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "delete REVISION",
		Short: "Delete a revision that serves no traffic",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cfg, err := g.client()
			if err != nil {
				return err
			}
			if err := g.confirm(fmt.Sprintf("Revision [%s] will be deleted.", args[0])); err != nil {
				return err
			}
			if err := c.Do(cmd.Context(), http.MethodDelete, client.RevisionsPath(cfg.Project, cfg.Region)+"/"+url.PathEscape(args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(g.stderr, "Deleted revision [%s].\n", args[0])
			return nil
		},
	}
	return cmd
}
