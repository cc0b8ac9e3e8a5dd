package server

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/usher-run/usher/internal/store"
	"github.com/usher-run/usher/internal/store/bolt"
	"github.com/usher-run/usher/internal/store/etcd"
)

// openStore opens the state store: the embedded bbolt file by default, or an
// etcd cluster for several nodes.
func openStore(ctx context.Context, cfg Config) (store.Store, error) {
	if cfg.Store == "" {
		if cfg.EtcdCert != "" || cfg.EtcdKey != "" || cfg.EtcdCA != "" {
			return nil, errors.New("--etcd-cert, --etcd-key and --etcd-ca need --store etcd://…")
		}
		if err := checkDataDir(cfg.DataDir, cfg.Reinitialize, cfg.Log); err != nil { // datadir.go
			return nil, err
		}
		st, err := bolt.Open(dbPath(cfg.DataDir))
		if err != nil {
			return nil, err
		}
		return st, nil
	}
	if !strings.HasPrefix(cfg.Store, "etcd://") {
		return nil, fmt.Errorf("--store %q: use etcd://HOST:PORT[,HOST:PORT…][/PREFIX], or leave it empty for the embedded store", cfg.Store)
	}
	ec, err := etcd.ParseURL(cfg.Store)
	if err != nil {
		return nil, err
	}
	ec.CertFile, ec.KeyFile, ec.CAFile = cfg.EtcdCert, cfg.EtcdKey, cfg.EtcdCA
	ec.Log = cfg.Log.With("node", cfg.NodeName) // the etcd client's logs are Usher's
	st, err := etcd.Open(ctx, ec)
	if err != nil {
		return nil, err
	}
	return st, nil
}
