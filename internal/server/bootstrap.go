package server

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/usher-run/usher/internal/admin"
	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/client"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/state"
	"github.com/usher-run/usher/internal/store"
)

// bootstrap makes a fresh data dir usable with no setup: the project, its
// owner, the default service account, and a CLI configuration holding the
// owner's credential. Every step is idempotent, so a restart changes nothing.
func bootstrap(ctx context.Context, st store.Store, cfg Config) error {
	now := time.Now().UTC().Format(time.RFC3339)
	project := state.Project{ProjectID: cfg.Project, ProjectNumber: apis.ProjectNumber(cfg.Project), Name: cfg.Project, LifecycleState: "ACTIVE", CreateTime: now}
	if err := createIfAbsent(ctx, st, state.ProjectKey(cfg.Project), project); err != nil {
		return err
	}
	owner := iam.Policy{Version: iam.Version1, Bindings: []iam.Binding{{Role: "roles/owner", Members: []string{"user:" + OwnerEmail}}}}
	if err := createIfAbsent(ctx, st, state.ProjectPolicyKey(cfg.Project), owner); err != nil {
		return err
	}
	sa := admin.NewServiceAccountRecord(project, apis.DefaultServiceAccount(project.ProjectID), "Default compute service account", "")
	if err := createIfAbsent(ctx, st, state.ServiceAccountKey(cfg.Project, sa.Email), sa); err != nil {
		return err
	}

	path := filepath.Join(cfg.DataDir, "config.json")
	conf, err := client.LoadConfig(path)
	if err != nil || !credentialKnown(ctx, st, conf.Credential) {
		secret, err := newSecret()
		if err != nil {
			return err
		}
		if _, err := state.Put(ctx, st, state.CredentialKey(admin.HashCredential(secret)), state.Credential{Email: OwnerEmail, Created: now}, store.MustNotExist); err != nil {
			return err
		}
		conf = client.Config{Credential: secret}
	}
	// The server URL follows the listener (a restart on another port must
	// not leave the CLI pointing at the old one).
	conf.Server, conf.Project, conf.Region, conf.Account = cfg.PublicURL, cfg.Project, cfg.Region, OwnerEmail
	conf.TokenFile = tokenFilePath(cfg.DataDir)
	if err := client.WriteConfig(path, conf); err != nil {
		return err
	}
	if cfg.WriteUserConfig {
		if err := writeUserConfig(ctx, st, cfg, conf); err != nil {
			return err
		}
	}
	return nil
}

// writeUserConfig writes ~/.config/usher/config.json when it does not exist,
// or when it names this server but holds a credential this server does not
// know (its data dir was wiped): that file could never work again.
func writeUserConfig(ctx context.Context, st store.Store, cfg Config, conf client.Config) error {
	home, err := client.DefaultConfigPath()
	if err != nil {
		return nil // no home directory: the data dir's config is enough
	}
	if old, err := client.LoadConfig(home); err == nil {
		if old.Server != cfg.PublicURL || credentialKnown(ctx, st, old.Credential) {
			return nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := client.WriteConfig(home, conf); err != nil {
		return fmt.Errorf("writing %s: %w", home, err)
	}
	return nil
}

func credentialKnown(ctx context.Context, st store.Store, secret string) bool {
	if secret == "" {
		return false
	}
	var cred state.Credential
	_, err := state.Get(ctx, st, state.CredentialKey(admin.HashCredential(secret)), &cred)
	return err == nil
}

func createIfAbsent(ctx context.Context, st store.Store, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := st.Put(ctx, key, b, store.MustNotExist); err != nil && !errors.Is(err, store.ErrConflict) {
		return err
	}
	return nil
}

func newSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return "usher1." + base64.RawURLEncoding.EncodeToString(b), nil
}
