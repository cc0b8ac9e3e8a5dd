package apis

import (
	"path/filepath"
	"strings"
	"testing"
)

// FuzzSecretVolumePath checks that a secret volume's item path accepted by
// validation can never leave the mount's directory: it joins to a direct
// child of the mount.
func FuzzSecretVolumePath(f *testing.F) {
	for _, s := range []string{"key", "..", ".", "../etc/passwd", "/abs", "a/b", "a\x00b", "", "..."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		v := &SecretVolumeSource{SecretName: "s", Items: []KeyToPath{{Key: "latest", Path: name}}}
		if err := validateSecretVolume("v", v); err != nil {
			return
		}
		const mount = "/mnt/secrets"
		joined := filepath.Join(mount, name)
		if filepath.Dir(joined) != mount || strings.ContainsRune(name, 0) {
			t.Fatalf("accepted %q, which joins to %q outside %s", name, joined, mount)
		}
	})
}
