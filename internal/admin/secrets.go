package admin

import (
	"context"
	"errors"
	"hash/crc32"
	"net/http"
	"regexp"
	"slices"
	"strconv"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/audit"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/state"
	"github.com/usher-run/usher/internal/store"
)

// Secret Manager v1, as Google's API has it: secrets (a name, labels, an IAM
// policy) and their numbered versions, whose payloads the store holds
// sealed with a data key of its own (state.SealSecret). Permissions are
// checked on the project's policy and then the secret's own.

// Limits: Google's payload limit; MaxSecretVersions is Usher's (Google has
// none), so a secret's deletion, which removes every version with it, fits
// one store transaction.
const (
	MaxSecretPayload  = 64 << 10
	MaxSecretVersions = 100
)

var secretIDRE = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,255}$`)

// castagnoli is the CRC32C table Google's dataCrc32c uses.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Secret is Secret Manager v1's Secret.
type Secret struct {
	Name        string            `json:"name"`
	Replication map[string]any    `json:"replication"`
	CreateTime  string            `json:"createTime"`
	Labels      map[string]string `json:"labels,omitempty"`
	Etag        string            `json:"etag"`
}

// SecretVersion is Secret Manager v1's SecretVersion.
type SecretVersion struct {
	Name                           string         `json:"name"`
	CreateTime                     string         `json:"createTime"`
	State                          string         `json:"state"`
	ReplicationStatus              map[string]any `json:"replicationStatus"`
	Etag                           string         `json:"etag"`
	ClientSpecifiedPayloadChecksum bool           `json:"clientSpecifiedPayloadChecksum,omitempty"`
}

// SecretPayload is an accessed version's value.
type SecretPayload struct {
	Name    string `json:"name"`
	Payload struct {
		Data       []byte `json:"data"`
		DataCrc32c string `json:"dataCrc32c"`
	} `json:"payload"`
}

func secretResource(projectNumber, name string) string {
	return "projects/" + projectNumber + "/secrets/" + name
}

// secretIAMResource names a secret by its project's ID, as the audit trail
// (which files records by project ID) and IAM levels name resources; API
// answers name it by project number, as Google's do (secretResource).
func secretIAMResource(p state.Project, name string) string {
	return "projects/" + p.ProjectID + "/secrets/" + name
}

func secretView(p state.Project, s state.Secret, rev int64) Secret {
	repl := s.Replication
	if repl == nil {
		repl = map[string]any{"automatic": map[string]any{}}
	}
	return Secret{Name: secretResource(p.ProjectNumber, s.Name), Replication: repl, CreateTime: s.CreateTime, Labels: s.Labels, Etag: `"` + strconv.FormatInt(rev, 10) + `"`}
}

func versionView(p state.Project, secret string, v state.SecretVersion, rev int64) SecretVersion {
	return SecretVersion{
		Name:       secretResource(p.ProjectNumber, secret) + "/versions/" + v.VersionName(),
		CreateTime: v.CreateTime, State: v.State,
		ReplicationStatus: map[string]any{"automatic": map[string]any{}},
		Etag:              `"` + strconv.FormatInt(rev, 10) + `"`,
	}
}

// secretLevels are the policies in force on a secret (which need not exist).
func (c *Core) secretLevels(ctx context.Context, p state.Project, name string) ([]iam.Level, error) {
	proj, err := c.projectLevel(ctx, p.ProjectID)
	if err != nil {
		return nil, err
	}
	pol, _, err := c.readPolicy(ctx, state.SecretPolicyKey(p.ProjectID, name))
	if err != nil {
		return nil, err
	}
	return []iam.Level{proj, {Resource: secretIAMResource(p, name), Policy: pol}}, nil
}

// authorizeSecret checks perm on a secret of project (ID or number) and
// reads it: NOT_FOUND only once the caller may know.
func (c *Core) authorizeSecret(ctx context.Context, caller *Caller, project, name, perm string) (state.Project, state.Secret, int64, error) {
	var s state.Secret
	p, err := c.Project(ctx, project)
	if err != nil {
		return p, s, 0, err
	}
	if !secretIDRE.MatchString(name) {
		return p, s, 0, InvalidArgument("Secret ID %q is invalid: use 1 to 255 letters, digits, '-' and '_'.", name)
	}
	levels, err := c.secretLevels(ctx, p, name)
	if err != nil {
		return p, s, 0, err
	}
	if err := c.authorize(caller, perm, secretResource(p.ProjectNumber, name), levels...); err != nil {
		return p, s, 0, err
	}
	rev, err := state.Get(ctx, c.cfg.Store, state.SecretKey(p.ProjectID, name), &s)
	if errors.Is(err, store.ErrNotFound) {
		return p, s, 0, NotFound("Secret [%s] not found.", secretResource(p.ProjectNumber, name))
	}
	return p, s, rev, err
}

// CreateSecret makes an empty secret (secretmanager.secrets.create on the
// project).
func (c *Core) CreateSecret(ctx context.Context, caller *Caller, project, name string, labels map[string]string, replication map[string]any) (Secret, error) {
	p, err := c.AuthorizeProject(ctx, caller, project, iam.PermSecretsCreate)
	if err != nil {
		return Secret{}, err
	}
	if !secretIDRE.MatchString(name) {
		return Secret{}, InvalidArgument("Secret ID %q is invalid: use 1 to 255 letters, digits, '-' and '_'.", name)
	}
	if len(labels) > 64 {
		return Secret{}, InvalidArgument("A secret may have at most 64 labels.")
	}
	s := state.Secret{Name: name, CreateTime: c.cfg.Now().UTC().Format("2006-01-02T15:04:05.000000Z"), Labels: labels, Replication: replication}
	res := secretResource(p.ProjectNumber, name)
	rev, err := c.commit(ctx, caller, change{
		writes: []write{{key: state.SecretKey(p.ProjectID, name), value: s, expected: store.MustNotExist,
			conflict: func() error { return AlreadyExists("Secret [%s] already exists.", res) }}},
		record: audit.Record{Kind: audit.KindSecretCreate, Permission: iam.PermSecretsCreate, Resource: secretIAMResource(p, name)},
	})
	if err != nil {
		return Secret{}, err
	}
	return secretView(p, s, rev), nil
}

// GetSecret describes a secret (secretmanager.secrets.get).
func (c *Core) GetSecret(ctx context.Context, caller *Caller, project, name string) (Secret, error) {
	p, s, rev, err := c.authorizeSecret(ctx, caller, project, name, iam.PermSecretsGet)
	if err != nil {
		return Secret{}, err
	}
	return secretView(p, s, rev), nil
}

// ListSecrets lists a project's secrets (secretmanager.secrets.list on it).
func (c *Core) ListSecrets(ctx context.Context, caller *Caller, project string) ([]Secret, error) {
	p, err := c.AuthorizeProject(ctx, caller, project, iam.PermSecretsList)
	if err != nil {
		return nil, err
	}
	secrets, revs, err := state.List[state.Secret](ctx, c.cfg.Store, state.SecretKey(p.ProjectID, ""))
	if err != nil {
		return nil, err
	}
	out := make([]Secret, len(secrets))
	for i, s := range secrets {
		out[i] = secretView(p, s, revs[i])
	}
	return out, nil
}

// DeleteSecret deletes a secret with its versions and policy, in one
// transaction (secretmanager.secrets.delete).
func (c *Core) DeleteSecret(ctx context.Context, caller *Caller, project, name string) error {
	p, _, rev, err := c.authorizeSecret(ctx, caller, project, name, iam.PermSecretsDelete)
	if err != nil {
		return err
	}
	res := secretResource(p.ProjectNumber, name)
	writes := []write{{key: state.SecretKey(p.ProjectID, name), expected: rev,
		conflict: func() error { return Aborted("Secret [%s] was changed concurrently. Retry.", res) }}}
	entries, _, err := c.cfg.Store.List(ctx, state.SecretVersionKey(p.ProjectID, name, ""))
	if err != nil {
		return err
	}
	for _, e := range entries {
		writes = append(writes, write{key: e.Key, expected: e.Revision})
	}
	if _, prev, err := c.readPolicy(ctx, state.SecretPolicyKey(p.ProjectID, name)); err != nil {
		return err
	} else if prev != 0 {
		writes = append(writes, write{key: state.SecretPolicyKey(p.ProjectID, name), expected: prev})
	}
	_, err = c.commit(ctx, caller, change{writes: writes,
		record: audit.Record{Kind: audit.KindSecretDelete, Permission: iam.PermSecretsDelete, Resource: secretIAMResource(p, name)}})
	return err
}

// AddSecretVersion adds payload as a secret's newest version
// (secretmanager.versions.add). crc, if set, is the client's CRC32C of
// payload and must match.
func (c *Core) AddSecretVersion(ctx context.Context, caller *Caller, project, name string, payload []byte, crc *int64) (SecretVersion, error) {
	p, s, rev, err := c.authorizeSecret(ctx, caller, project, name, iam.PermVersionsAdd)
	if err != nil {
		return SecretVersion{}, err
	}
	if len(payload) > MaxSecretPayload {
		return SecretVersion{}, InvalidArgument("Secret payload is %d bytes; at most %d are allowed.", len(payload), MaxSecretPayload)
	}
	sum := int64(crc32.Checksum(payload, castagnoli))
	if crc != nil && *crc != sum {
		return SecretVersion{}, InvalidArgument("Data corruption detected: the payload's CRC32C is not payload.dataCrc32c.")
	}
	versions, _, err := state.List[state.SecretVersion](ctx, c.cfg.Store, state.SecretVersionKey(p.ProjectID, name, ""))
	if err != nil {
		return SecretVersion{}, err
	}
	if len(versions) >= MaxSecretVersions {
		return SecretVersion{}, FailedPrecondition("Secret [%s] has %d versions, Usher's limit; delete the secret and create it again to start over.", secretResource(p.ProjectNumber, name), len(versions))
	}
	next := 1
	for _, v := range versions {
		next = max(next, v.Version+1)
	}
	v := state.SecretVersion{Version: next, CreateTime: c.cfg.Now().UTC().Format("2006-01-02T15:04:05.000000Z"), State: "ENABLED", CRC32C: sum}
	key := state.SecretVersionKey(p.ProjectID, name, v.VersionName())
	if v.Sealed, err = state.SealSecret(ctx, c.cfg.Store, key, payload); err != nil {
		return SecretVersion{}, err
	}
	res := secretResource(p.ProjectNumber, name)
	raced := func() error { return Aborted("Secret [%s] was changed concurrently. Retry.", res) }
	vrev, err := c.commit(ctx, caller, change{
		// The secret is rewritten as read, so a version never outlives a
		// concurrent deletion of its secret.
		writes: []write{
			{key: key, value: v, expected: store.MustNotExist, conflict: raced},
			{key: state.SecretKey(p.ProjectID, name), value: s, expected: rev, conflict: raced},
		},
		record: audit.Record{Kind: audit.KindSecretVersionAdd, Permission: iam.PermVersionsAdd, Resource: secretIAMResource(p, name) + "/versions/" + v.VersionName()},
	})
	if err != nil {
		return SecretVersion{}, err
	}
	out := versionView(p, name, v, vrev)
	out.ClientSpecifiedPayloadChecksum = crc != nil
	return out, nil
}

// readVersion finds version ("latest": the newest enabled one) of a secret.
func (c *Core) readVersion(ctx context.Context, p state.Project, name, version string) (state.SecretVersion, int64, error) {
	v, rev, err := ResolveSecretVersion(ctx, c.cfg.Store, p.ProjectID, name, version)
	if errors.Is(err, store.ErrNotFound) {
		return v, 0, NotFound("Secret Version [%s/versions/%s] not found.", secretResource(p.ProjectNumber, name), version)
	}
	return v, rev, err
}

// ResolveSecretVersion reads version of a secret: a number, or "latest"
// for the newest ENABLED version. store.ErrNotFound when there is none.
func ResolveSecretVersion(ctx context.Context, st store.Store, project, name, version string) (state.SecretVersion, int64, error) {
	var v state.SecretVersion
	if version != "latest" {
		n, err := strconv.Atoi(version)
		if err != nil || n < 1 || strconv.Itoa(n) != version {
			return v, 0, store.ErrNotFound
		}
		rev, err := state.Get(ctx, st, state.SecretVersionKey(project, name, version), &v)
		return v, rev, err
	}
	versions, revs, err := state.List[state.SecretVersion](ctx, st, state.SecretVersionKey(project, name, ""))
	if err != nil {
		return v, 0, err
	}
	best, bestRev := -1, int64(0)
	for i, cand := range versions {
		if cand.State == "ENABLED" && (best < 0 || cand.Version > versions[best].Version) {
			best, bestRev = i, revs[i]
		}
	}
	if best < 0 {
		return v, 0, store.ErrNotFound
	}
	return versions[best], bestRev, nil
}

// RuntimeSecretValue opens version of a secret of project (resolved as
// ResolveSecretVersion does) for an instance starting as serviceAccount
// (empty: the project's default account), which must hold
// secretmanager.versions.access on it now: a grant revoked since the deploy
// stops new instances, as on Cloud Run.
func (c *Core) RuntimeSecretValue(ctx context.Context, project, serviceAccount, name, version string) ([]byte, error) {
	p, err := c.Project(ctx, project)
	if err != nil {
		return nil, err
	}
	if serviceAccount == "" {
		serviceAccount = apis.DefaultServiceAccount(p.ProjectID)
	}
	// The account must be usable now, as its tokens must: a disabled or
	// deleted account, or one of a project being deleted, reads nothing.
	if sa, _, _, err := c.findServiceAccount(ctx, "-", serviceAccount); err != nil || sa.Disabled {
		return nil, Errorf(http.StatusForbidden, "PERMISSION_DENIED", "Service account %s is disabled or deleted (or its project is being deleted); it reads no secret.", serviceAccount)
	}
	levels, err := c.secretLevels(ctx, p, name)
	if err != nil {
		return nil, err
	}
	runAs := iam.NewPrincipal(serviceAccount)
	if !c.holds(&Caller{Principal: runAs}, iam.PermVersionsAccess, levels...) {
		return nil, PermissionDenied(iam.PermVersionsAccess, secretResource(p.ProjectNumber, name)+" for "+runAs.Email)
	}
	v, _, err := ResolveSecretVersion(ctx, c.cfg.Store, p.ProjectID, name, version)
	if err != nil {
		return nil, err
	}
	if v.State != "ENABLED" {
		return nil, errors.New("secret version " + version + " of " + name + " is " + v.State)
	}
	return state.OpenSecret(ctx, c.cfg.Store, state.SecretVersionKey(p.ProjectID, name, v.VersionName()), v.Sealed)
}

// AccessSecretVersion returns a version's payload
// (secretmanager.versions.access).
func (c *Core) AccessSecretVersion(ctx context.Context, caller *Caller, project, name, version string) (SecretPayload, error) {
	p, _, _, err := c.authorizeSecret(ctx, caller, project, name, iam.PermVersionsAccess)
	if err != nil {
		return SecretPayload{}, err
	}
	v, _, err := c.readVersion(ctx, p, name, version)
	if err != nil {
		return SecretPayload{}, err
	}
	if v.State != "ENABLED" {
		return SecretPayload{}, FailedPrecondition("Secret Version [%s/versions/%d] is in %s state.", secretResource(p.ProjectNumber, name), v.Version, v.State)
	}
	data, err := state.OpenSecret(ctx, c.cfg.Store, state.SecretVersionKey(p.ProjectID, name, v.VersionName()), v.Sealed)
	if err != nil {
		return SecretPayload{}, err
	}
	var out SecretPayload
	out.Name = secretResource(p.ProjectNumber, name) + "/versions/" + v.VersionName()
	out.Payload.Data = data
	out.Payload.DataCrc32c = strconv.FormatInt(v.CRC32C, 10)
	return out, nil
}

// GetSecretVersion describes a version (secretmanager.versions.get).
func (c *Core) GetSecretVersion(ctx context.Context, caller *Caller, project, name, version string) (SecretVersion, error) {
	p, _, _, err := c.authorizeSecret(ctx, caller, project, name, iam.PermVersionsGet)
	if err != nil {
		return SecretVersion{}, err
	}
	v, rev, err := c.readVersion(ctx, p, name, version)
	if err != nil {
		return SecretVersion{}, err
	}
	return versionView(p, name, v, rev), nil
}

// ListSecretVersions lists a secret's versions, newest first
// (secretmanager.versions.list).
func (c *Core) ListSecretVersions(ctx context.Context, caller *Caller, project, name string) ([]SecretVersion, error) {
	p, _, _, err := c.authorizeSecret(ctx, caller, project, name, iam.PermVersionsList)
	if err != nil {
		return nil, err
	}
	versions, revs, err := state.List[state.SecretVersion](ctx, c.cfg.Store, state.SecretVersionKey(p.ProjectID, name, ""))
	if err != nil {
		return nil, err
	}
	out := make([]SecretVersion, len(versions))
	for i, v := range versions {
		out[i] = versionView(p, name, v, revs[i])
	}
	slices.SortFunc(out, func(a, b SecretVersion) int { return -compareVersionNames(a.Name, b.Name) })
	return out, nil
}

func compareVersionNames(a, b string) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// SecretTarget is a secret's IAM policy; writing it needs the secret.
func (c *Core) SecretTarget(ctx context.Context, project, name string) (*Target, error) {
	p, err := c.Project(ctx, project)
	if err != nil {
		return nil, err
	}
	if !secretIDRE.MatchString(name) {
		return nil, InvalidArgument("Secret ID %q is invalid.", name)
	}
	proj, err := c.projectLevel(ctx, p.ProjectID)
	if err != nil {
		return nil, err
	}
	return &Target{
		key:      state.SecretPolicyKey(p.ProjectID, name),
		Resource: secretIAMResource(p, name),
		parents:  []iam.Level{proj},
		getPerm:  iam.PermSecretsGetIamPolicy,
		setPerm:  iam.PermSecretsSetIamPolicy,
		scope:    iam.ScopeSecret,
		exists: func(ctx context.Context) error {
			if _, err := c.cfg.Store.Get(ctx, state.SecretKey(p.ProjectID, name)); errors.Is(err, store.ErrNotFound) {
				return NotFound("Secret [%s] not found.", secretResource(p.ProjectNumber, name))
			} else if err != nil {
				return err
			}
			return nil
		},
	}, nil
}

// checkSecretRefs checks, as Cloud Run does at deploy, that the revision's
// runtime service account holds secretmanager.versions.access on every
// secret its env or volumes reference, and that each referenced version
// exists (a number) or some version is enabled (latest). The caller needs
// nothing of Secret Manager: the account reads the values, not the
// deployer (who already holds iam.serviceAccounts.actAs on it).
func (c *Core) checkSecretRefs(ctx context.Context, p state.Project, s *apis.Service) error {
	return c.checkSpecSecretRefs(ctx, p, s.Spec.Template.Spec)
}

// checkSpecSecretRefs is checkSecretRefs for a revision's spec, or a job's
// task (its containers and account).
func (c *Core) checkSpecSecretRefs(ctx context.Context, p state.Project, spec apis.RevisionSpec) error {
	runAs := iam.NewPrincipal(spec.ServiceAccountName)
	for _, ref := range secretRefs(spec) {
		levels, err := c.secretLevels(ctx, p, ref.secret)
		if err != nil {
			return err
		}
		res := secretResource(p.ProjectNumber, ref.secret)
		if !c.holds(&Caller{Principal: runAs}, iam.PermVersionsAccess, levels...) {
			return Errorf(http.StatusForbidden, "PERMISSION_DENIED", "Permission denied on secret: %s for Revision service account %s. The service account used must be granted the 'Secret Manager Secret Accessor' role (roles/secretmanager.secretAccessor) at the secret, project or higher level.", res+"/versions/"+ref.version, runAs.Email)
		}
		if _, _, err := ResolveSecretVersion(ctx, c.cfg.Store, p.ProjectID, ref.secret, ref.version); errors.Is(err, store.ErrNotFound) {
			return NotFound("Secret %s/versions/%s was not found (%s).", res, ref.version, ref.use)
		} else if err != nil {
			return err
		}
	}
	return nil
}

// secretRef is one use of a secret's version by a revision.
type secretRef struct{ secret, version, use string }

// secretRefs are the secret versions a revision reads: its env vars' and
// its secret volumes' files.
func secretRefs(spec apis.RevisionSpec) []secretRef {
	var out []secretRef
	for _, ct := range spec.Containers {
		for _, e := range ct.Env {
			if secret, version, ok := e.SecretRef(); ok {
				out = append(out, secretRef{secret, version, "env " + e.Name})
			}
		}
	}
	for _, v := range spec.Volumes {
		if v.Secret == nil {
			continue
		}
		for _, f := range v.Secret.SecretFiles() {
			out = append(out, secretRef{v.Secret.SecretName, f.Version, "volume " + v.Name + ", file " + f.Path})
		}
	}
	return out
}
