package server

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/usher-run/usher/internal/authn"
)

func TestTrustedIssuersFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	want := []authn.ExternalIssuer{
		{Issuer: "https://dex.example.com", GroupsClaim: "groups"},
		{Issuer: "https://accounts.google.com"},
		{Issuer: "https://keycloak.example.com/realms/x"},
	}
	for _, f := range []string{
		write("a.yaml", "- issuer: https://dex.example.com\n  groupsClaim: groups\n- issuer: https://accounts.google.com\n"),
		write("a.json", `[{"issuer":"https://dex.example.com","groupsClaim":"groups"},{"issuer":"https://accounts.google.com"}]`),
	} {
		c := Config{TrustedIssuersFile: f, TrustedIssuers: []string{"https://keycloak.example.com/realms/x"}}
		got, err := c.trustedIssuers()
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: got %+v, want %+v", f, got, want)
		}
	}
	for _, body := range []string{"issuer: https://x\n", "- groupsClaim: g\n", "- issuer: https://x\n  typo: 1\n"} {
		c := Config{TrustedIssuersFile: write("bad.yaml", body)}
		if _, err := c.trustedIssuers(); err == nil {
			t.Errorf("%q accepted", body)
		}
	}
	if _, err := (&Config{TrustedIssuersFile: filepath.Join(dir, "missing")}).trustedIssuers(); err == nil {
		t.Error("missing file accepted")
	}
}
