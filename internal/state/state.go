// Package state names where each resource lives in the store and reads and
// writes them as JSON with compare-and-swap, so the API, the controller and the
// server agree on one layout. It holds no state of its own.
package state

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/usher-run/usher/internal/store"
)

// Key prefixes. A key's parts never contain "/" (names are DNS labels, emails
// and project IDs), so prefixes list exactly one kind.
const (
	ProjectsPrefix               = "projects/"
	ServicesPrefix               = "services/"
	RevisionsPrefix              = "revisions/"
	ServiceAccountsPrefix        = "serviceaccounts/"
	CredentialsPrefix            = "credentials/"
	ServicePoliciesPrefix        = "policies/services/"
	ProjectPoliciesPrefix        = "policies/projects/"
	ServiceAccountPoliciesPrefix = "policies/serviceaccounts/"
	// DeletedServiceAccountsPrefix holds deleted accounts' tombstones
	// (PROJECT/UNIQUEID) for undelete.
	DeletedServiceAccountsPrefix = "deletedserviceaccounts/"
	// ServiceAccountKeysPrefix holds service-account keys' public halves.
	ServiceAccountKeysPrefix = "serviceaccountkeys/"
	// SigningKeysPrefix holds accounts' system-managed signing keys (for
	// signBlob and signJwt), by PROJECT/EMAIL/UNIQUEID.
	SigningKeysPrefix = "serviceaccountsigningkeys/"
)

// SigningKeyKey is the system-managed signing key of one incarnation of an
// account: a re-created account (a new unique ID) never signs with its
// predecessor's key.
func SigningKeyKey(p, email, uid string) string {
	return SigningKeysPrefix + p + "/" + email + "/" + uid
}

func ProjectKey(p string) string               { return ProjectsPrefix + p }
func ServiceKey(p, region, name string) string { return ServicesPrefix + p + "/" + region + "/" + name }
func RevisionKey(p, region, name string) string {
	return RevisionsPrefix + p + "/" + region + "/" + name
}
func ServiceAccountKey(p, email string) string { return ServiceAccountsPrefix + p + "/" + email }

// ServiceAccountKeyKey is one key of an account; keys of an account share
// the prefix ServiceAccountKeyKey(p, email, "").
func ServiceAccountKeyKey(p, email, keyID string) string {
	return ServiceAccountKeysPrefix + p + "/" + email + "/" + keyID
}
func DeletedServiceAccountKey(p, uid string) string {
	return DeletedServiceAccountsPrefix + p + "/" + uid
}
func CredentialKey(hash string) string { return CredentialsPrefix + hash }
func ServicePolicyKey(p, region, name string) string {
	return ServicePoliciesPrefix + p + "/" + region + "/" + name
}
func ProjectPolicyKey(p string) string { return ProjectPoliciesPrefix + p }
func ServiceAccountPolicyKey(p, email string) string {
	return ServiceAccountPoliciesPrefix + p + "/" + email
}

// SplitKey returns the parts after prefix, or nil when key is not under it or
// has a different number of parts than want.
func SplitKey(key, prefix string, want int) []string {
	rest, ok := strings.CutPrefix(key, prefix)
	if !ok {
		return nil
	}
	parts := strings.Split(rest, "/")
	if len(parts) != want {
		return nil
	}
	return parts
}

// Get reads and decodes key into v, returning its revision.
func Get(ctx context.Context, st store.Store, key string, v any) (int64, error) {
	e, err := st.Get(ctx, key)
	if err != nil {
		return 0, err
	}
	if err := json.Unmarshal(e.Value, v); err != nil {
		return 0, fmt.Errorf("state: decoding %s: %w", key, err)
	}
	return e.Revision, nil
}

// Put encodes v and writes it at key if its revision is expected.
func Put(ctx context.Context, st store.Store, key string, v any, expected int64) (int64, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, fmt.Errorf("state: encoding %s: %w", key, err)
	}
	return st.Put(ctx, key, b, expected)
}

// List reads and decodes every value under prefix.
func List[T any](ctx context.Context, st store.Store, prefix string) ([]T, []int64, error) {
	entries, _, err := st.List(ctx, prefix)
	if err != nil {
		return nil, nil, err
	}
	out := make([]T, 0, len(entries))
	revs := make([]int64, 0, len(entries))
	for _, e := range entries {
		var v T
		if err := json.Unmarshal(e.Value, &v); err != nil {
			return nil, nil, fmt.Errorf("state: decoding %s: %w", e.Key, err)
		}
		out = append(out, v)
		revs = append(revs, e.Revision)
	}
	return out, revs, nil
}

// Project is a project record, in Resource Manager v1's shape.
type Project struct {
	ProjectID      string            `json:"projectId"`
	ProjectNumber  string            `json:"projectNumber"`
	Name           string            `json:"name"`
	LifecycleState string            `json:"lifecycleState"`
	CreateTime     string            `json:"createTime"`
	Labels         map[string]string `json:"labels,omitempty"`
	// Creator is the member who created the project (for its quota);
	// empty for the server's first project. Not part of Google's shape:
	// the API leaves it out.
	Creator string `json:"creator,omitempty"`
}

// Active reports whether the project is in use: a project being deleted
// (DELETE_REQUESTED) serves nothing and holds no usable identity.
func (p *Project) Active() bool { return p.LifecycleState == "ACTIVE" }

// ProjectServes reports whether a project's services may be served and
// run, given what a decoded view (a mirror's) holds at its ProjectKey: not
// while the project is being deleted. A project the view does not hold
// (nil) serves, so views that do not follow projects are unaffected.
func ProjectServes(record any) bool {
	p, ok := record.(*Project)
	return !ok || p.Active()
}

// Credential is a long-lived CLI credential, stored by the SHA-256 of its
// secret so the store never holds a usable secret.
type Credential struct {
	Email   string `json:"email"`
	Created string `json:"created"`
}
