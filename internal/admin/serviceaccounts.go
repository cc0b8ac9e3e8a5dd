package admin

// Service accounts, with Google's lifecycle:
//
//   - Every account gets a random unique ID, so an account re-created with a
//     deleted one's email is a different principal: tokens minted for the
//     old one (their sub is the unique ID) are refused, and it inherits no
//     grant.
//   - Deleting an account rewrites every policy member naming it (project,
//     service and service account policies) to
//     deleted:serviceAccount:EMAIL?uid=UID, which applies to nobody, and
//     keeps a tombstone for 30 days; undelete (by unique ID) restores the
//     account, its own policy and those members, unless its email has been
//     taken by a new account meanwhile.
//   - A disabled account keeps its grants but authenticates nowhere: its
//     tokens are refused at the gateway and the admin API, and no new token
//     is minted for it, until it is enabled.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/audit"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/issuer"
	"github.com/usher-run/usher/internal/state"
	"github.com/usher-run/usher/internal/store"
)

// accountIDRE is IAM's rule for service account IDs.
var accountIDRE = regexp.MustCompile(`^[a-z][a-z0-9-]{4,28}[a-z0-9]$`)

// UndeleteWindow is how long a deleted account can be undeleted.
const UndeleteWindow = 30 * 24 * time.Hour

// DeletedAccount is the tombstone of a deleted service account.
type DeletedAccount struct {
	Account   apis.ServiceAccount `json:"account"`
	Policy    *iam.Policy         `json:"policy,omitempty"`
	DeletedAt time.Time           `json:"deletedAt"`
}

// NewServiceAccountRecord builds the record of a service account with a
// fresh random unique ID (21 digits, as Google's).
func NewServiceAccountRecord(p state.Project, email, displayName, description string) apis.ServiceAccount {
	var b [8]byte
	rand.Read(b[:])
	uid := fmt.Sprintf("1%020d", binary.BigEndian.Uint64(b[:])%10_000_000_000_000_000_000)
	return apis.ServiceAccount{
		Name:           apis.ServiceAccountResource(p.ProjectID, email),
		ProjectID:      p.ProjectID,
		UniqueID:       uid,
		Email:          email,
		DisplayName:    displayName,
		Description:    description,
		OAuth2ClientID: uid,
		Etag:           "MDEwMjE5MjA=",
	}
}

// ListServiceAccounts lists a project's service accounts.
func (c *Core) ListServiceAccounts(ctx context.Context, caller *Caller, project string) ([]apis.ServiceAccount, error) {
	p, err := c.AuthorizeProject(ctx, caller, project, iam.PermSAList)
	if err != nil {
		return nil, err
	}
	accounts, _, err := state.List[apis.ServiceAccount](ctx, c.cfg.Store, state.ServiceAccountsPrefix+p.ProjectID+"/")
	if accounts == nil {
		accounts = []apis.ServiceAccount{}
	}
	return accounts, err
}

// CreateServiceAccount creates NAME@PROJECT.iam.gserviceaccount.com.
func (c *Core) CreateServiceAccount(ctx context.Context, caller *Caller, project, accountID, displayName, description string) (*apis.ServiceAccount, error) {
	p, err := c.AuthorizeProject(ctx, caller, project, iam.PermSACreate)
	if err != nil {
		return nil, err
	}
	if !accountIDRE.MatchString(accountID) {
		return nil, InvalidArgument("accountId %q must be 6-30 characters: lowercase letters, digits and dashes, starting with a letter and not ending with a dash", accountID)
	}
	sa := NewServiceAccountRecord(p, apis.ServiceAccountEmail(accountID, p.ProjectID), displayName, description)
	_, err = c.commit(ctx, caller, change{
		writes: []write{{key: state.ServiceAccountKey(p.ProjectID, sa.Email), value: &sa, expected: store.MustNotExist, conflict: func() error {
			return AlreadyExists("Service account %s already exists within project projects/%s.", accountID, p.ProjectID)
		}}},
		record: audit.Record{Kind: audit.KindServiceAccountCreate, Permission: iam.PermSACreate, Resource: apis.ServiceAccountResource(p.ProjectID, sa.Email), Details: &audit.Details{Email: sa.Email}},
	})
	if err != nil {
		return nil, err
	}
	return &sa, nil
}

// findServiceAccount resolves a service account by email or unique ID in
// project ("-" for any project, as IAM allows).
func (c *Core) findServiceAccount(ctx context.Context, project, ref string) (apis.ServiceAccount, int64, string, error) {
	var sa apis.ServiceAccount
	ref = strings.ToLower(ref)
	var projects []string
	if project == "-" {
		if p, err := c.accountProject(ctx, ref); err != nil {
			return sa, 0, "", err
		} else if p != "" {
			projects = []string{p}
		} else {
			all, _, err := state.List[state.Project](ctx, c.cfg.Store, state.ProjectsPrefix)
			if err != nil {
				return sa, 0, "", err
			}
			for _, p := range all {
				projects = append(projects, p.ProjectID)
			}
		}
	} else {
		p, err := c.Project(ctx, project)
		if err != nil {
			return sa, 0, "", err
		}
		projects = []string{p.ProjectID}
	}
	for _, p := range projects {
		rev, err := state.Get(ctx, c.cfg.Store, state.ServiceAccountKey(p, ref), &sa)
		if err == nil {
			return sa, rev, p, nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return sa, 0, "", err
		}
		entries, _, err := c.cfg.Store.List(ctx, state.ServiceAccountsPrefix+p+"/")
		if err != nil {
			return sa, 0, "", err
		}
		for _, e := range entries {
			var acc apis.ServiceAccount
			if json.Unmarshal(e.Value, &acc) == nil && acc.UniqueID == ref {
				return acc, e.Revision, p, nil
			}
		}
	}
	return sa, 0, "", NotFound("Service account projects/%s/serviceAccounts/%s does not exist.", project, ref)
}

// ServiceAccountTarget is a service account's policy.
func (c *Core) ServiceAccountTarget(ctx context.Context, project, ref string) (*Target, apis.ServiceAccount, error) {
	sa, _, p, err := c.findServiceAccount(ctx, project, ref)
	if err != nil {
		return nil, sa, err
	}
	t, err := c.accountTarget(ctx, p, sa.Email)
	return t, sa, err
}

func (c *Core) accountTarget(ctx context.Context, project, email string) (*Target, error) {
	proj, err := c.projectLevel(ctx, project)
	if err != nil {
		return nil, err
	}
	return &Target{
		key:      state.ServiceAccountPolicyKey(project, email),
		Resource: apis.ServiceAccountResource(project, email),
		parents:  []iam.Level{proj},
		getPerm:  iam.PermSAGetIamPolicy,
		setPerm:  iam.PermSASetIamPolicy,
		scope:    iam.ScopeService,
	}, nil
}

// authorizeAccount checks perm on an account and returns its target.
func (c *Core) authorizeAccount(ctx context.Context, caller *Caller, project, ref, perm string) (*Target, apis.ServiceAccount, int64, error) {
	sa, rev, p, err := c.findServiceAccount(ctx, project, ref)
	if err != nil {
		return nil, sa, 0, err
	}
	t, err := c.accountTarget(ctx, p, sa.Email)
	if err != nil {
		return nil, sa, 0, err
	}
	own, _, err := c.readPolicy(ctx, t.key)
	if err != nil {
		return nil, sa, 0, err
	}
	return t, sa, rev, c.authorize(caller, perm, t.Resource, t.levels(own)...)
}

// GetServiceAccount reads one account.
func (c *Core) GetServiceAccount(ctx context.Context, caller *Caller, project, ref string) (*apis.ServiceAccount, error) {
	_, sa, _, err := c.authorizeAccount(ctx, caller, project, ref, iam.PermSAGet)
	if err != nil {
		return nil, err
	}
	return &sa, nil
}

// SetServiceAccountDisabled disables or enables an account.
func (c *Core) SetServiceAccountDisabled(ctx context.Context, caller *Caller, project, ref string, disabled bool) (*apis.ServiceAccount, error) {
	perm, kind := iam.PermSAEnable, audit.KindServiceAccountEnable
	if disabled {
		perm, kind = iam.PermSADisable, audit.KindServiceAccountDisable
	}
	t, sa, rev, err := c.authorizeAccount(ctx, caller, project, ref, perm)
	if err != nil {
		return nil, err
	}
	if sa.Disabled == disabled {
		return &sa, nil
	}
	sa.Disabled = disabled
	_, err = c.commit(ctx, caller, change{
		writes: []write{{key: state.ServiceAccountKey(sa.ProjectID, sa.Email), value: &sa, expected: rev}},
		record: audit.Record{Kind: kind, Permission: perm, Resource: t.Resource, Details: &audit.Details{Email: sa.Email}},
	})
	if err != nil {
		return nil, err
	}
	return &sa, nil
}

// DeletedMember is how policies name a deleted account.
func DeletedMember(email, uid string) string {
	return "deleted:serviceAccount:" + email + "?uid=" + uid
}

// DeleteServiceAccount deletes an account: its members in every policy are
// rewritten to DeletedMember, its tokens stop working, and a tombstone lets
// it be undeleted for UndeleteWindow.
func (c *Core) DeleteServiceAccount(ctx context.Context, caller *Caller, project, ref string) error {
	t, sa, rev, err := c.authorizeAccount(ctx, caller, project, ref, iam.PermSADelete)
	if err != nil {
		return err
	}
	own, _, err := c.readPolicy(ctx, t.key)
	if err != nil {
		return err
	}
	tomb := DeletedAccount{Account: sa, Policy: own, DeletedAt: c.cfg.Now().UTC()}
	_, err = c.commit(ctx, caller, change{
		writes: []write{
			{key: state.ServiceAccountKey(sa.ProjectID, sa.Email), expected: rev},
			{key: state.DeletedServiceAccountKey(sa.ProjectID, sa.UniqueID), value: &tomb, expected: store.AnyRevision},
			{key: t.key, expected: store.AnyRevision},
		},
		also: func(ctx context.Context) (int64, error) {
			return c.rewriteMembers(ctx, "serviceAccount:"+sa.Email, DeletedMember(sa.Email, sa.UniqueID))
		},
		record: audit.Record{Kind: audit.KindServiceAccountDelete, Permission: iam.PermSADelete, Resource: t.Resource, Details: &audit.Details{Email: sa.Email}},
	})
	return err
}

// UndeleteServiceAccount restores a deleted account (by unique ID) with its
// policy and its members in every policy.
func (c *Core) UndeleteServiceAccount(ctx context.Context, caller *Caller, project, uid string) (*apis.ServiceAccount, error) {
	var (
		tomb    DeletedAccount
		tombRev int64
		found   string
	)
	projects := []string{project}
	if project == "-" {
		all, _, err := state.List[state.Project](ctx, c.cfg.Store, state.ProjectsPrefix)
		if err != nil {
			return nil, err
		}
		projects = projects[:0]
		for _, p := range all {
			projects = append(projects, p.ProjectID)
		}
	} else {
		p, err := c.Project(ctx, project)
		if err != nil {
			return nil, err
		}
		projects = []string{p.ProjectID}
	}
	for _, p := range projects {
		rev, err := state.Get(ctx, c.cfg.Store, state.DeletedServiceAccountKey(p, uid), &tomb)
		if err == nil {
			tombRev, found = rev, p
			break
		}
		if !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
	}
	if found == "" {
		if _, err := c.AuthorizeProject(ctx, caller, projects[0], iam.PermSAUndelete); err != nil {
			return nil, err
		}
		return nil, NotFound("No deleted service account with unique ID %s.", uid)
	}
	sa := tomb.Account
	resource := apis.ServiceAccountResource(found, sa.Email)
	if _, err := c.AuthorizeProject(ctx, caller, found, iam.PermSAUndelete); err != nil {
		return nil, PermissionDenied(iam.PermSAUndelete, resource)
	}
	if c.cfg.Now().Sub(tomb.DeletedAt) > UndeleteWindow {
		return nil, FailedPrecondition("Service account %s was deleted more than 30 days ago and cannot be undeleted.", sa.Email)
	}
	writes := []write{
		{key: state.ServiceAccountKey(found, sa.Email), value: &sa, expected: store.MustNotExist, conflict: func() error {
			return FailedPrecondition("Service account %s cannot be undeleted: a new account with the same email exists.", sa.Email)
		}},
		{key: state.DeletedServiceAccountKey(found, uid), expected: tombRev},
	}
	if tomb.Policy != nil {
		writes = append(writes, write{key: state.ServiceAccountPolicyKey(found, sa.Email), value: tomb.Policy, expected: store.AnyRevision})
	}
	_, err := c.commit(ctx, caller, change{
		writes: writes,
		also: func(ctx context.Context) (int64, error) {
			return c.rewriteMembers(ctx, DeletedMember(sa.Email, sa.UniqueID), "serviceAccount:"+sa.Email)
		},
		record: audit.Record{Kind: audit.KindServiceAccountUndelete, Permission: iam.PermSAUndelete, Resource: resource, Details: &audit.Details{Email: sa.Email}},
	})
	if err != nil {
		return nil, err
	}
	return &sa, nil
}

// rewriteMembers replaces member from with to in every stored policy,
// compare-and-swap per policy (retrying those that change meanwhile). It
// returns the last revision written (0: none).
func (c *Core) rewriteMembers(ctx context.Context, from, to string) (int64, error) {
	var last int64
	for _, prefix := range []string{state.ProjectPoliciesPrefix, state.ServicePoliciesPrefix, state.ServiceAccountPoliciesPrefix, state.JobPoliciesPrefix} {
		entries, _, err := c.cfg.Store.List(ctx, prefix)
		if err != nil {
			return last, err
		}
		for _, e := range entries {
			for attempt := 0; ; attempt++ {
				var p iam.Policy
				if err := json.Unmarshal(e.Value, &p); err != nil {
					return last, fmt.Errorf("decoding %s: %w", e.Key, err)
				}
				changed := false
				for i := range p.Bindings {
					for j, m := range p.Bindings[i].Members {
						// Emails match whatever their case, as IAM matches them.
						if strings.EqualFold(m, from) {
							p.Bindings[i].Members[j] = to
							changed = true
						}
					}
				}
				if !changed {
					break
				}
				norm := p.Normalize()
				rev, err := state.Put(ctx, c.cfg.Store, e.Key, &norm, e.Revision)
				if err == nil {
					last = rev
					break
				}
				if !errors.Is(err, store.ErrConflict) || attempt == 10 {
					return last, err
				}
				if e, err = c.cfg.Store.Get(ctx, e.Key); err != nil {
					if errors.Is(err, store.ErrNotFound) {
						break
					}
					return last, err
				}
			}
		}
	}
	return last, nil
}

// impersonate checks that caller may mint perm's kind of token for the
// account (getOpenIdToken or getAccessToken) and that it is enabled.
func (c *Core) impersonate(ctx context.Context, caller *Caller, project, ref, perm string, delegates []string) (apis.ServiceAccount, error) {
	if len(delegates) > 0 {
		return apis.ServiceAccount{}, InvalidArgument("delegation chains are not supported; call with the account directly")
	}
	_, sa, _, err := c.authorizeAccount(ctx, caller, project, ref, perm)
	if err != nil {
		return sa, err
	}
	if sa.Disabled {
		return sa, FailedPrecondition("Service account %s is disabled; no token is issued for it.", sa.Email)
	}
	return sa, nil
}

// GenerateIDToken is IAM Credentials' generateIdToken: an identity token
// for the account, for holders of iam.serviceAccounts.getOpenIdToken on it.
func (c *Core) GenerateIDToken(ctx context.Context, caller *Caller, project, ref, audience string, delegates []string) (string, error) {
	sa, err := c.impersonate(ctx, caller, project, ref, iam.PermSAGetOpenIDToken, delegates)
	if err != nil {
		return "", err
	}
	if strings.TrimSpace(audience) == "" {
		return "", InvalidArgument("audience is required")
	}
	return c.mintIdentity(sa.UniqueID, sa.Email, audience, time.Time{})
}

// mintIdentity mints an identity token, refusing the admin API's audience.
func (c *Core) mintIdentity(subject, email, audience string, exp time.Time) (string, error) {
	tok, err := c.cfg.Minter.MintIdentity(subject, email, []string{audience}, exp)
	if errors.Is(err, issuer.ErrReservedAudience) {
		return "", InvalidArgument("audience %q is reserved for the admin API's access tokens; an identity token cannot carry it.", audience)
	}
	return tok, err
}

// GenerateAccessToken is IAM Credentials' generateAccessToken, for holders
// of iam.serviceAccounts.getAccessToken on the account.
func (c *Core) GenerateAccessToken(ctx context.Context, caller *Caller, project, ref string, scopes []string, lifetime time.Duration, delegates []string) (string, time.Time, error) {
	sa, err := c.impersonate(ctx, caller, project, ref, iam.PermSAGetAccessToken, delegates)
	if err != nil {
		return "", time.Time{}, err
	}
	if lifetime <= 0 || lifetime > issuer.MaxTokenLifetime {
		lifetime = issuer.MaxTokenLifetime
	}
	exp := c.cfg.Now().Add(lifetime)
	tok, err := c.cfg.Minter.MintAccess(sa.UniqueID, sa.Email, strings.Join(scopes, " "), exp)
	return tok, exp, err
}

// Tokens are what a CLI credential exchanges for.
type Tokens struct {
	Access, Identity string
	Expiry           time.Time
}

// ErrBadCredential is a credential the server does not know.
var ErrBadCredential = errors.New("admin: unknown credential")

// ExchangeCredential trades a long-lived CLI credential for an access token
// and an identity token (audience: the CLI's client ID unless given).
func (c *Core) ExchangeCredential(ctx context.Context, secret, scope, audience string) (*Tokens, error) {
	var cred state.Credential
	if _, err := state.Get(ctx, c.cfg.Store, state.CredentialKey(HashCredential(secret)), &cred); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, ErrBadCredential
		}
		return nil, err
	}
	exp := c.cfg.Now().Add(issuer.MaxTokenLifetime)
	access, err := c.cfg.Minter.MintAccess(cred.Email, cred.Email, scope, exp)
	if err != nil {
		return nil, err
	}
	if audience == "" {
		audience = issuer.CLIClientID
	}
	id, err := c.mintIdentity(cred.Email, cred.Email, audience, exp)
	if err != nil {
		return nil, err
	}
	return &Tokens{Access: access, Identity: id, Expiry: exp}, nil
}

// HashCredential is how credentials are keyed in the store.
func HashCredential(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// AccountUID is the unique ID of the service account email ("" when it is
// not one of Usher's existing accounts).
func (c *Core) AccountUID(ctx context.Context, email string) (string, error) {
	sa, _, _, err := c.findServiceAccount(ctx, "-", email)
	if IsNotFound(err) {
		return "", nil
	}
	return sa.UniqueID, err
}
