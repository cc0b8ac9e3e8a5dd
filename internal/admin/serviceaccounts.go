package admin

// Service accounts, with Google's lifecycle:
//
//   - Every account gets a random unique ID, so an account re-created with a
//     deleted one's email is a different principal: tokens minted for the
//     old one (their sub is the unique ID) are refused, and it inherits no
//     grant.
//   - Deleting an account rewrites every policy member naming it (project,
//     service, job and service account policies) to
//     deleted:serviceAccount:EMAIL?uid=UID, which applies to nobody, in the
//     transaction that deletes it, and keeps a tombstone for 30 days; undelete (by unique ID) restores the
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
			if _, err := c.Project(ctx, p); err != nil {
				return sa, 0, "", err
			}
			projects = []string{p}
		} else if strings.Contains(ref, "@") {
			// An email names its project (or is none of Usher's): no
			// need to look through every project, which a caller without
			// credentials (/token, published keys) must not cost.
			return sa, 0, "", NotFound("Service account projects/%s/serviceAccounts/%s does not exist.", project, ref)
		} else if projects, err = c.activeProjects(ctx); err != nil {
			return sa, 0, "", err
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

// UpdateServiceAccount changes an account's display name and description,
// the fields mask names ("displayName", "description"; empty: both). Other
// fields are Google's or Usher's to set, and are refused.
func (c *Core) UpdateServiceAccount(ctx context.Context, caller *Caller, project, ref, displayName, description string, mask []string) (*apis.ServiceAccount, error) {
	if len(mask) == 0 {
		mask = []string{"displayName", "description"}
	}
	for _, f := range mask {
		if f != "displayName" && f != "description" {
			return nil, InvalidArgument("updateMask: field %q cannot be updated (only displayName and description)", f)
		}
	}
	if len(displayName) > 100 || len(description) > 256 {
		return nil, InvalidArgument("displayName is at most 100 characters, description at most 256")
	}
	t, sa, rev, err := c.authorizeAccount(ctx, caller, project, ref, iam.PermSAUpdate)
	if err != nil {
		return nil, err
	}
	for _, f := range mask {
		if f == "displayName" {
			sa.DisplayName = displayName
		} else {
			sa.Description = description
		}
	}
	_, err = c.commit(ctx, caller, change{
		writes: []write{{key: state.ServiceAccountKey(sa.ProjectID, sa.Email), value: &sa, expected: rev}},
		record: audit.Record{Kind: audit.KindServiceAccountUpdate, Permission: iam.PermSAUpdate, Resource: t.Resource, Details: &audit.Details{Email: sa.Email}},
	})
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

// KindServiceAccountDeleteStep records a step of a delete too large for
// one transaction: members rewritten before the account is deleted.
const KindServiceAccountDeleteStep = "serviceAccount.deleteStep"

// DeleteServiceAccount deletes an account: its members in every policy are
// rewritten to DeletedMember, its tokens stop working, and a tombstone lets
// it be undeleted for UndeleteWindow. The deletion, the tombstone, the
// account's own policy's deletion, every rewrite and the audit record are
// one transaction, so that no failure leaves a deleted account's email
// with grants a new account of that email would inherit. Lost races with
// concurrent changes are retried from the reads.
//
// An account named in more policies than one transaction holds (MaxTxnOps)
// is deleted in steps, in the one safe order: its members are rewritten
// first, each step a transaction of its own, recorded as
// KindServiceAccountDeleteStep, and the last transaction deletes the
// account with the remaining rewrites. A failure between steps leaves the
// account existing with fewer grants, never a deleted account with grants;
// deleting it again finishes the job.
func (c *Core) DeleteServiceAccount(ctx context.Context, caller *Caller, project, ref string) error {
	return retrying(ctx, func() error { return c.deleteServiceAccount(ctx, caller, project, ref) })
}

func (c *Core) deleteServiceAccount(ctx context.Context, caller *Caller, project, ref string) error {
	t, sa, rev, err := c.authorizeAccount(ctx, caller, project, ref, iam.PermSADelete)
	if err != nil {
		return err
	}
	own, ownRev, err := c.readPolicy(ctx, t.key)
	if err != nil {
		return err
	}
	ownExpected := ownRev
	if own == nil {
		ownExpected = store.AnyRevision // one written meanwhile goes too
	}
	tomb := DeletedAccount{Account: sa, Policy: own, DeletedAt: c.cfg.Now().UTC()}
	deletion := []write{
		{key: state.ServiceAccountKey(sa.ProjectID, sa.Email), expected: rev},
		{key: state.DeletedServiceAccountKey(sa.ProjectID, sa.UniqueID), value: &tomb, expected: store.AnyRevision},
		{key: t.key, expected: ownExpected},
		// Its signing key (signBlob, signJwt): no private key outlives it.
		{key: state.SigningKeyKey(sa.ProjectID, sa.Email, sa.UniqueID), expected: store.AnyRevision},
	}
	rewrites, err := c.memberRewrites(ctx, "serviceAccount:"+sa.Email, DeletedMember(sa.Email, sa.UniqueID), t.key)
	if err != nil {
		return err
	}
	for {
		ok, err := fits(append(deletion[:len(deletion):len(deletion)], rewrites...))
		if err != nil {
			return err
		}
		if ok || len(rewrites) == 0 {
			break // (a deletion too large alone is the store's to refuse)
		}
		n, err := fitting(rewrites)
		if err != nil {
			return err
		}
		if _, err := c.commit(ctx, caller, change{
			writes: rewrites[:n],
			record: audit.Record{Kind: KindServiceAccountDeleteStep, Permission: iam.PermSADelete, Resource: t.Resource, Details: &audit.Details{Email: sa.Email}},
		}); err != nil {
			return err
		}
		rewrites = rewrites[n:]
	}
	_, err = c.commit(ctx, caller, change{
		writes: append(deletion, rewrites...),
		record: audit.Record{Kind: audit.KindServiceAccountDelete, Permission: iam.PermSADelete, Resource: t.Resource, Details: &audit.Details{Email: sa.Email}},
	})
	return err
}

// UndeleteServiceAccount restores a deleted account (by unique ID) with its
// policy and its members in every policy, in one transaction with its
// audit record (lost races retried from the reads). Members that do not
// fit that transaction (MaxTxnOps) are restored after it, in steps.
func (c *Core) UndeleteServiceAccount(ctx context.Context, caller *Caller, project, uid string) (*apis.ServiceAccount, error) {
	var sa *apis.ServiceAccount
	err := retrying(ctx, func() (err error) {
		sa, err = c.undeleteServiceAccount(ctx, caller, project, uid)
		return err
	})
	return sa, err
}

func (c *Core) undeleteServiceAccount(ctx context.Context, caller *Caller, project, uid string) (*apis.ServiceAccount, error) {
	var (
		tomb    DeletedAccount
		tombRev int64
		found   string
	)
	projects := []string{project}
	if project == "-" {
		var err error
		if projects, err = c.activeProjects(ctx); err != nil {
			return nil, err
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
	accountKey := state.ServiceAccountKey(found, sa.Email)
	restore := []write{
		{key: accountKey, value: &sa, expected: store.MustNotExist, conflict: func() error {
			return FailedPrecondition("Service account %s cannot be undeleted: a new account with the same email exists.", sa.Email)
		}},
		{key: state.DeletedServiceAccountKey(found, uid), expected: tombRev},
	}
	if tomb.Policy != nil {
		restore = append(restore, write{key: state.ServiceAccountPolicyKey(found, sa.Email), value: tomb.Policy, expected: store.AnyRevision})
	}
	rewrites, err := c.memberRewrites(ctx, DeletedMember(sa.Email, sa.UniqueID), "serviceAccount:"+sa.Email, state.ServiceAccountPolicyKey(found, sa.Email))
	if err != nil {
		return nil, err
	}
	// The account first, then its grants: what does not fit the first
	// transaction is restored in steps after it, each checking that the
	// account is still the one restored, so no step grants its email to
	// anyone else. A failure between steps leaves it with fewer grants.
	all := append(restore[:len(restore):len(restore)], rewrites...)
	n, err := fitting(all)
	if err != nil {
		return nil, err
	}
	n = max(n, len(restore))
	accountRev, err := c.commit(ctx, caller, change{
		writes: all[:n],
		record: audit.Record{Kind: audit.KindServiceAccountUndelete, Permission: iam.PermSAUndelete, Resource: resource, Details: &audit.Details{Email: sa.Email}},
	})
	if err != nil {
		return nil, err
	}
	for rest := all[n:]; len(rest) > 0; {
		// The guard rewrites the account as it is, on the revision the
		// previous step left.
		step := append([]write{{key: accountKey, value: &sa, expected: accountRev}}, rest...)
		k, err := fitting(step)
		if err != nil {
			return nil, err
		}
		k = max(k, 2)
		if accountRev, err = c.commit(ctx, caller, change{
			writes: step[:k],
			record: audit.Record{Kind: KindServiceAccountUndeleteStep, Permission: iam.PermSAUndelete, Resource: resource, Details: &audit.Details{Email: sa.Email}},
		}); err != nil {
			c.cfg.Log.Error("undelete: members not restored", "account", sa.Email, "members", len(rest), "err", err)
			// Not a lost race to retry: the account is back, the tombstone gone.
			return nil, Aborted("Service account %s was undeleted, but %d of the policies naming it were changed concurrently and still name it as deleted; grant it there again.", sa.Email, len(rest))
		}
		rest = rest[k-1:]
	}
	return &sa, nil
}

// KindServiceAccountUndeleteStep records a step of an undelete too large
// for one transaction: members restored after the account.
const KindServiceAccountUndeleteStep = "serviceAccount.undeleteStep"

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
