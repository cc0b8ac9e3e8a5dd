package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/usher-run/usher/internal/testsupport/usherproc"
)

// TestREADMECommandsParse: every `usher …` command in the README's shell
// blocks names a command that exists, with flags it accepts (each is run
// with --help, which parses them all and runs nothing), so the README
// cannot drift from the CLI. TestREADMEDemo runs the demo itself.
func TestREADMECommandsParse(t *testing.T) {
	root, err := usherproc.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	cmds := readmeUsherCommands(string(readme))
	if len(cmds) < 40 {
		t.Fatalf("found %d usher commands in the README; the extraction is broken", len(cmds))
	}
	home := t.TempDir()
	for _, args := range cmds {
		cmd := exec.Command(usherBin, append(args, "--help")...)
		cmd.Env = append(usherproc.CleanEnv(func(k string) bool { return k == "HOME" || strings.HasPrefix(k, "USHER_") }), "HOME="+home)
		done := make(chan struct{})
		timer := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill(); close(done) })
		out, err := cmd.CombinedOutput()
		timer.Stop()
		if err != nil || strings.Contains(string(out), "unknown") {
			t.Errorf("README: usher %s\n  does not parse: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// readmeUsherCommands returns the arguments of every usher command in the
// sh blocks of md: continuations joined, comments dropped, each command of
// a pipeline, list or $(…) substitution on its own.
func readmeUsherCommands(md string) [][]string {
	var out [][]string
	subst := regexp.MustCompile(`\$\(([^()]*(?:\([^()]*\)[^()]*)*)\)`)
	for _, block := range shellBlocks(md) {
		block = strings.ReplaceAll(block, "\\\n", " ")
		for _, line := range strings.Split(block, "\n") {
			line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "$ "))
			// $(…): its own command if it is usher's; a placeholder word here.
			for _, m := range subst.FindAllStringSubmatch(line, -1) {
				if args := usherArgs(m[1]); args != nil {
					out = append(out, args)
				}
			}
			line = subst.ReplaceAllString(line, "X")
			for _, seg := range regexp.MustCompile(`&&|\|\||;|\|`).Split(line, -1) {
				if args := usherArgs(seg); args != nil {
					out = append(out, args)
				}
			}
		}
	}
	return out
}

// usherArgs splits one simple command; nil unless it runs usher.
func usherArgs(cmd string) []string {
	words := shellWords(cmd)
	if len(words) == 0 || (words[0] != "usher" && words[0] != "./usher") {
		return nil
	}
	args := []string{}
	for _, w := range words[1:] {
		// [--flag=VALUE] in a synopsis: the flag is optional, and valid.
		args = append(args, strings.TrimSuffix(strings.TrimPrefix(w, "["), "]"))
	}
	return args
}

// shellWords splits like a shell, enough for the README: quotes, and a
// comment from a # that starts a word.
func shellWords(s string) []string {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote rune
	for _, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case r == '#' && !inWord:
			return words
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}
