package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/usher-run/usher/internal/issuer"

	"github.com/usher-run/usher/internal/store"
)

// publicURLKey holds the cluster's public URL in a shared store: the first
// node writes it, every other node checks its own against it.
const publicURLKey = "cluster/public-url"

// clusterPublicURL makes every node of a cluster use one public URL, the
// tokens' issuer and the base of service URLs and audiences. The first node
// started with --public-url stores it; a node given another one refuses to
// start; a node given none adopts the stored one (or, when none is stored,
// keeps its own default, unshared).
func clusterPublicURL(ctx context.Context, st store.Store, own string, given bool) (string, error) {
	own = strings.TrimRight(own, "/")
	for range 3 {
		kv, err := st.Get(ctx, publicURLKey)
		switch {
		case err == nil:
			stored := string(kv.Value)
			if given && stored != own {
				return "", fmt.Errorf("--public-url %s differs from the cluster's public URL %s (stored in the store at %q by the first node): "+
					"start every node with the same --public-url, or with none to adopt the stored one", own, stored, publicURLKey)
			}
			return stored, nil
		case errors.Is(err, store.ErrNotFound):
			if !given {
				// Nothing to share yet and nothing given: this node keeps its
				// own default (a single node on etcd, or a node moved to a
				// fresh port, must not pin the cluster to its listener).
				return own, nil
			}
			if _, err := st.Put(ctx, publicURLKey, []byte(own), store.MustNotExist); err == nil {
				return own, nil
			} else if !errors.Is(err, store.ErrConflict) {
				return "", fmt.Errorf("storing the cluster's public URL: %w", err)
			}
			// Another node stored one first: read it again.
		default:
			return "", fmt.Errorf("reading the cluster's public URL: %w", err)
		}
	}
	return "", errors.New("the cluster's public URL keeps changing")
}

// rotateOnSignal makes a new signing key current on SIGUSR1 (a suspected key
// leak, or a test of rotation across nodes); every node picks it up from the
// store, and tokens signed by the previous key keep verifying until they
// expire.
func rotateOnSignal(ctx context.Context, iss *issuer.Issuer, log *slog.Logger) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR1)
	defer signal.Stop(ch)
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
			if err := iss.Rotate(ctx); err != nil {
				log.Error("rotating the signing key (SIGUSR1)", "err", err)
				continue
			}
			log.Info("signing key rotated (SIGUSR1)")
		}
	}
}
