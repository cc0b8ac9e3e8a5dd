package server

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/usher-run/usher/internal/api"
	"github.com/usher-run/usher/internal/authn"
	"github.com/usher-run/usher/internal/client"
	"github.com/usher-run/usher/internal/store"
	"github.com/usher-run/usher/internal/store/bolt"
)

// BackupPath streams a consistent snapshot of the embedded store (usher
// backup). The snapshot holds every project's state, the signing keys and
// credential hashes: only the server's owner principal may take it.
const BackupPath = client.BackupPath

// backupHandler answers BackupPath. It is tiny on purpose: authenticate,
// check the caller is the owner, write the snapshot.
func backupHandler(st store.Store, verifier api.Verifier, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := authn.BearerToken(r.Header.Get("Authorization"))
		if !ok {
			writeAPIError(w, http.StatusUnauthorized, "UNAUTHENTICATED", "usher backup needs the owner's access token")
			return
		}
		id, err := verifier.Verify(tok)
		if err != nil || !id.IsAccessToken() || !id.HasAudience(api.AccessTokenAudience) || id.Email == "" {
			writeAPIError(w, http.StatusUnauthorized, "UNAUTHENTICATED", "invalid access token")
			return
		}
		if id.Email != OwnerEmail {
			writeAPIError(w, http.StatusForbidden, "PERMISSION_DENIED", "only "+OwnerEmail+" (the credential in the data dir's config.json) may take a backup: it holds every project's state and the signing keys")
			return
		}
		b, ok := st.(*bolt.Store)
		if !ok {
			writeAPIError(w, http.StatusBadRequest, "FAILED_PRECONDITION", "this server keeps its state in etcd: back it up with `etcdctl snapshot save FILE`")
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", `attachment; filename="usher-`+time.Now().UTC().Format("20060102T150405Z")+`.db"`)
		// The snapshot may take longer than an admin call's deadline; it is
		// one read transaction and does not hold up writers.
		n, err := b.Backup(w)
		if err != nil {
			log.Error("backup failed", "err", err, "bytes", n)
			if n == 0 {
				writeAPIError(w, http.StatusInternalServerError, "INTERNAL", "backup failed: "+err.Error())
			}
			// Past the first byte, the client sees a cut stream.
			panic(http.ErrAbortHandler)
		}
		log.Info("backup taken", "bytes", n, "by", id.Email)
	})
}

func writeAPIError(w http.ResponseWriter, code int, status, msg string) {
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="usher"`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write([]byte(`{"error":{"code":` + strconv.Itoa(code) + `,"status":"` + status + `","message":` + strconv.Quote(msg) + `}}` + "\n"))
}

// adminDeadline bounds every call to API hosts: a store that does not answer
// in time makes the call fail with 503 UNAVAILABLE (the API maps
// context.DeadlineExceeded so) instead of hanging. Exempt: BackupPath, and
// operations' :wait, which waits by design (at most 5 minutes, bounded by
// the API).
func adminDeadline(h http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Backups, operations' :wait and source builds bound themselves.
		if r.URL.Path == BackupPath || strings.HasSuffix(r.URL.Path, ":wait") || strings.HasSuffix(r.URL.Path, "/sourceBuilds") {
			h.ServeHTTP(w, r)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), d)
		defer cancel()
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}
