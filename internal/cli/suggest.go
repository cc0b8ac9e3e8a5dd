package cli

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/usher-run/usher/internal/iam"
)

// likeGcloud makes mistakes fail as gcloud's do: an unknown command or flag
// exits non-zero with the nearest names, instead of printing help and
// exiting 0. It walks the whole tree, so command groups added later get it too.
//
// It returns the error of a --help that followed an unknown command (cobra
// shows the group's help and succeeds there), once the command has run.
func likeGcloud(root *cobra.Command) (helpErr func() error) {
	var unknownHelp error
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		name, ok := strings.CutPrefix(err.Error(), "unknown flag: --")
		if !ok {
			return err
		}
		var names []string
		cmd.Flags().VisitAll(func(f *pflag.Flag) { names = append(names, f.Name) })
		cmd.InheritedFlags().VisitAll(func(f *pflag.Flag) { names = append(names, f.Name) })
		if near := nearest(name, names); len(near) > 0 {
			return fmt.Errorf("%w for %q; did you mean --%s?", err, cmd.CommandPath(), strings.Join(near, " or --"))
		}
		return fmt.Errorf("%w for %q; see %s --help", err, cmd.CommandPath(), cmd.CommandPath())
	})
	// --help after a command a group does not have shows no help: the
	// command is unknown, as it is without --help.
	help := root.HelpFunc()
	root.SetHelpFunc(func(cmd *cobra.Command, args []string) {
		if rest := cmd.Flags().Args(); cmd.HasSubCommands() && len(rest) > 0 {
			if err := unknownSubcommand(cmd, rest); err != nil {
				unknownHelp = err
				return
			}
		}
		help(cmd, args)
	})
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		if c.HasSubCommands() && c.Run == nil && c.RunE == nil {
			c.Args = cobra.ArbitraryArgs
			c.RunE = unknownSubcommand
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	return func() error { return unknownHelp }
}

// unknownSubcommand runs when a command group is given something that is not
// one of its commands.
func unknownSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return cmd.Help()
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	var names []string
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() {
			names = append(names, c.Name())
		}
	}
	if near := nearest(args[0], names); len(near) > 0 {
		return fmt.Errorf("%s; did you mean %q?", msg, strings.Join(near, `" or "`))
	}
	return fmt.Errorf("%s; its commands are: %s", msg, strings.Join(names, ", "))
}

// nearest returns the names within edit distance 2 of s (or having s as a
// prefix), closest first.
func nearest(s string, names []string) []string {
	best, out := 3, []string(nil)
	for _, n := range names {
		d := iam.EditDistance(strings.ToLower(s), strings.ToLower(n))
		if strings.HasPrefix(n, s) && d > 1 {
			d = 1
		}
		switch {
		case d < best:
			best, out = d, []string{n}
		case d == best && !slices.Contains(out, n):
			out = append(out, n)
		}
	}
	return out
}

// errNeedsQuiet: a confirmation was needed and nobody can answer it.
var errNeedsQuiet = errors.New("this command asks for confirmation and standard input is not a terminal: pass --quiet to go ahead without one")

// confirm asks "Do you want to continue (y/N)?" unless --quiet was given.
// Without a terminal on standard input it refuses rather than wait or
// assume: a script must say --quiet.
func (g *globals) confirm(what string) error {
	if g.quiet {
		return nil
	}
	f, ok := g.stdin.(*os.File)
	if !ok {
		return errNeedsQuiet
	}
	if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err != nil {
		return errNeedsQuiet // not a terminal (a pipe, a file, /dev/null)
	}
	fmt.Fprintf(g.stderr, "%s\n\nDo you want to continue (y/N)? ", what)
	line, _ := bufio.NewReader(f).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return errors.New("aborted by user")
}

// checkRole catches the commonest mistakes in --role before the server sees
// them: a predefined role without roles/ and a near-miss of a predefined
// role's name.
func checkRole(role string) error {
	if strings.HasPrefix(role, "projects/") || strings.HasPrefix(role, "organizations/") {
		return nil
	}
	var names []string
	for _, r := range iam.Predefined().List() {
		names = append(names, r.Name)
	}
	if slices.Contains(names, role) {
		return nil
	}
	if !strings.HasPrefix(role, "roles/") && slices.Contains(names, "roles/"+role) {
		return fmt.Errorf("invalid role %q: did you mean %q?", role, "roles/"+role)
	}
	if near := nearest(role, names); len(near) > 0 {
		return fmt.Errorf("role %q does not exist: did you mean %q?", role, strings.Join(near, `" or "`))
	}
	if near := nearest("roles/"+role, names); len(near) > 0 && !strings.HasPrefix(role, "roles/") {
		return fmt.Errorf("role %q does not exist: did you mean %q?", role, strings.Join(near, `" or "`))
	}
	return nil // maybe a custom role the server knows
}
