package server

import (
	"context"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/usher-run/usher/internal/client"
	"github.com/usher-run/usher/internal/issuer"
)

// tokenFilePath is where the owner's access token is kept fresh for tools
// that read a token from a file (gcloud's auth/access_token_file).
func tokenFilePath(dataDir string) string {
	abs, err := filepath.Abs(filepath.Join(dataDir, "access-token"))
	if err != nil {
		return filepath.Join(dataDir, "access-token")
	}
	return abs
}

// writeTokenFile writes a fresh owner access token to path.
func writeTokenFile(m *issuer.Issuer, path string) error {
	tok, err := m.MintAccess(OwnerEmail, OwnerEmail, "", time.Now().Add(time.Hour))
	if err != nil {
		return err
	}
	return client.WriteFileAtomic(path, []byte(tok+"\n"), 0o600)
}

// keepTokenFresh rewrites the owner's access token well before it expires,
// for as long as the server runs.
func keepTokenFresh(ctx context.Context, m *issuer.Issuer, path string, log *slog.Logger) {
	const every = 20 * time.Minute // tokens live an hour
	for {
		t := time.NewTimer(every)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if err := writeTokenFile(m, path); err != nil {
			log.Warn("refreshing the access token file failed", "path", path, "err", err)
		}
	}
}
