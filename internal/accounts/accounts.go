// Package accounts keeps, in memory, which of Usher's service accounts may
// still authenticate, so that deleting or disabling an account (or
// deleting its project) takes effect on the very next request: a token
// minted for it (its "sub" is the account's unique ID) is refused at the gateway and at the admin API, even
// though its signature and expiry are still good, and a token minted for a
// deleted account is refused for a re-created one of the same email.
//
// The index follows the store by watching it (the same source as every
// other node's), so a change made on any node applies everywhere within
// the watch's latency. It answers from an immutable snapshot behind an
// atomic pointer: no lock and no I/O per request. It fails closed: while it
// cannot confirm it is current, tokens of service accounts are refused.
package accounts

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/authn"
	"github.com/usher-run/usher/internal/state"
	"github.com/usher-run/usher/internal/store"
)

// ErrUnusable is a valid token of a service account that was deleted,
// re-created or disabled since it was minted, or whose project is being
// deleted.
var ErrUnusable = errors.New("accounts: the token's service account is deleted or disabled")

// account is what the checks need of one account.
type account struct {
	uid      string
	disabled bool
}

// snapshot is the index at one store revision. It is never modified.
type snapshot struct {
	accounts map[string]account // by email
	projects map[string]bool    // project IDs
	defaults map[string]bool    // projects' default compute account emails
}

// Index is the live set of service accounts.
type Index struct {
	st   store.Store
	log  *slog.Logger
	snap atomic.Pointer[snapshot]
	// stale is set while the watch is broken and the index may be behind.
	stale atomic.Bool
}

// New returns an index with nothing loaded: until Sync, every service
// account's token is refused.
func New(st store.Store, log *slog.Logger) *Index {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	x := &Index{st: st, log: log}
	x.stale.Store(true)
	return x
}

// Sync loads the index; it returns the store revision loaded.
func (x *Index) Sync(ctx context.Context) (int64, error) {
	sas, rev, err := x.st.List(ctx, state.ServiceAccountsPrefix)
	if err != nil {
		return 0, err
	}
	projects, prev, err := x.st.List(ctx, state.ProjectsPrefix)
	if err != nil {
		return 0, err
	}
	snap := &snapshot{accounts: map[string]account{}, projects: map[string]bool{}, defaults: map[string]bool{}}
	inactive := map[string]bool{} // projects being deleted
	for _, e := range projects {
		var p state.Project
		if json.Unmarshal(e.Value, &p) == nil {
			snap.projects[p.ProjectID] = true
			snap.defaults[apis.DefaultServiceAccount(p.ProjectID)] = true
			inactive[p.ProjectID] = !p.Active()
		}
	}
	for _, e := range sas {
		var sa apis.ServiceAccount
		parts := state.SplitKey(e.Key, state.ServiceAccountsPrefix, 2)
		if parts != nil && json.Unmarshal(e.Value, &sa) == nil {
			// An account of a project being deleted is as good as disabled.
			snap.accounts[strings.ToLower(sa.Email)] = account{uid: sa.UniqueID, disabled: sa.Disabled || inactive[parts[0]]}
		}
	}
	x.snap.Store(snap)
	x.stale.Store(false)
	return min(rev, prev), nil
}

// Run keeps the index current until ctx ends: it reloads on every change
// to service accounts or projects (rare, small), and after a broken watch.
func (x *Index) Run(ctx context.Context) {
	rev := int64(0)
	for ctx.Err() == nil {
		var err error
		if rev, err = x.Sync(ctx); err != nil {
			x.stale.Store(true)
			x.log.Warn("accounts: loading failed; service account tokens are refused until it succeeds", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		x.follow(ctx, rev)
	}
}

// follow waits for a change under either prefix after rev, and returns so
// Run reloads (or when a watch breaks).
func (x *Index) follow(ctx context.Context, rev int64) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	accounts := x.st.Watch(ctx, state.ServiceAccountsPrefix, rev)
	projects := x.st.Watch(ctx, state.ProjectsPrefix, rev)
	for {
		var (
			resp store.WatchResponse
			ok   bool
		)
		select {
		case <-ctx.Done():
			return
		case resp, ok = <-accounts:
		case resp, ok = <-projects:
		}
		if !ok || resp.Err != nil {
			if ctx.Err() == nil {
				x.stale.Store(true)
			}
			return
		}
		if len(resp.Events) > 0 {
			return
		}
	}
}

// owned reports whether email names a service account of one of Usher's
// projects (whether or not it exists now).
func (s *snapshot) owned(email string) bool {
	if s.defaults[email] {
		return true
	}
	project := apis.ServiceAccountProject(email)
	return project != "" && s.projects[project]
}

// Usable reports whether a token of Usher's issuer for email, with subject
// sub, may still be honored. Principals that are not service accounts of
// Usher's projects are not this index's business; an account of Usher's
// must exist, with sub its unique ID, and be enabled.
func (x *Index) Usable(email, sub string) bool {
	a, ours, ok := x.lookup(email)
	return !ours || (ok && !a.disabled && sub == a.uid)
}

// Enabled reports whether email, if it names a service account of Usher's,
// exists and is enabled (for callers authenticated without a token, such as
// a console session).
func (x *Index) Enabled(email string) bool {
	a, ours, ok := x.lookup(email)
	return !ours || (ok && !a.disabled)
}

// lookup finds email's account: ours is whether email names (or might
// name, while the index is not current) a service account of Usher's, and
// ok whether it exists now.
func (x *Index) lookup(email string) (a account, ours, ok bool) {
	email = strings.ToLower(email)
	if !strings.HasSuffix(email, ".gserviceaccount.com") {
		return a, false, false
	}
	snap := x.snap.Load()
	if snap == nil || x.stale.Load() {
		return a, true, false // fail closed
	}
	if !snap.owned(email) {
		return a, false, false
	}
	a, ok = snap.accounts[email]
	return a, true, ok
}

// Verifier is a token verifier that also refuses tokens of service
// accounts that are no longer usable.
type Verifier struct {
	Next interface {
		Verify(token string) (*authn.Identity, error)
	}
	Index *Index
}

// Verify verifies token with Next, then checks its account.
func (v Verifier) Verify(token string) (*authn.Identity, error) {
	id, err := v.Next.Verify(token)
	if err != nil {
		return nil, err
	}
	if !id.External && !v.Index.Usable(id.Email, id.Subject) {
		return nil, ErrUnusable
	}
	return id, nil
}
