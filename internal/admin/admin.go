// Package admin is Usher's admin core: every operation that reads or changes
// Usher's state on behalf of a caller (services, revisions, IAM policies,
// service accounts and their tokens, custom roles, org policies), whichever
// door the caller came through (the HTTP API in Google's shapes, gcloud, the
// web console).
//
// It knows nothing about HTTP. Each operation takes a Caller, checks what it
// needs through Core.authorize (the one place a permission is decided, by
// package iam's one evaluator), validates, and writes through Core.commit,
// the one write sequence: compare-and-swap on the revision the caller read
// (a conflict is 409 ABORTED), durable in the store, then in force at the
// gateway, then on the audit trail, and only then answered.
//
// A change and all the cleanup it implies are one store transaction with
// its audit record: a deleted service account's members rewritten to
// deleted:serviceAccount:EMAIL?uid=ID in every policy, a deleted service's
// policy and revisions. So no crash or error between them can leave a
// deleted account's grants waiting for a new account of the same email,
// or a deleted service's revisions for a new service of the same name.
// Each rewritten policy is compare-and-swap on the revision read; a lost
// race runs the whole operation again from its reads, a bounded number of
// times (commitAttempts). A transaction holds at most MaxTxnOps operations
// (etcd's default --max-txn-ops, 128; about 1 MiB of values, under its
// --max-request-bytes). A change too large for one is split only where an
// order exists in which every intermediate state grants no more than the
// start did: authority is taken away first, in steps of their own (each
// recorded), and the deletion comes last with what remains, so a failure
// between steps leaves the object existing with less authority, and
// running the delete again finishes it. Undelete, the other way round,
// restores the account first and its grants after it, each step checking
// that the account is still the one restored.
//
// It must never grant what IAM did not: an operation that changes who can
// do what (a policy, a service's identity, its invoker check, a token) checks
// the permission Google checks for that effect, whatever field or API
// version asks for it.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/audit"
	"github.com/usher-run/usher/internal/build"
	"github.com/usher-run/usher/internal/history"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/logs"
	"github.com/usher-run/usher/internal/store"
)

// Minter mints the tokens Usher issues (the built-in issuer).
type Minter interface {
	MintAccess(subject, email, scope string, exp time.Time) (string, error)
	MintIdentity(subject, email string, audiences []string, exp time.Time) (string, error)
}

// Syncer reports when the gateway's view has caught up with a store revision.
type Syncer interface {
	WaitFor(ctx context.Context, revision int64) error
}

// Auditor keeps the audit trail (an *audit.Trail).
type Auditor interface {
	// Record writes one record durably; failures are the Auditor's to log.
	Record(ctx context.Context, r audit.Record) error
	// Entry is r as a store key and value, for the change's own
	// transaction; Committed logs it once that has committed.
	Entry(r audit.Record) (key string, value []byte, _ audit.Record, err error)
	Committed(ctx context.Context, r audit.Record)
	Read(ctx context.Context, q audit.Query) (audit.Page, error)
	// Flush writes what is queued (refused requests), so a read sees it.
	Flush(ctx context.Context) error
}

var _ Auditor = (*audit.Trail)(nil)

// MetricsHistory answers a service's recent metrics (a *history.Recorder).
type MetricsHistory interface {
	Query(ctx context.Context, k history.Key, window string) (history.Result, error)
}

// Config wires the core.
type Config struct {
	Store  store.Store
	Roles  *iam.Roles
	Minter Minter
	Sync   Syncer
	// DefaultRegion is used when a request names none.
	DefaultRegion string
	// RootProject is the server's first project, which stands in for an
	// organization: creating projects needs resourcemanager.projects.create
	// on it, and it cannot be deleted (projects.go). Empty: no project can
	// be created.
	RootProject string
	// ServiceURL renders a service's URL.
	ServiceURL func(project, region, name string) string
	// Logs holds jobs' recent task output, and services' instances' when
	// Entries is nil (nil: none kept).
	Logs *logs.Book[logs.Entry]
	// Entries, if set, keeps services' instances' output and requests
	// durably: it serves the Logging API and ServiceLogs.
	Entries LogEntries
	// Audit, if set, records every write.
	Audit Auditor
	// OrgPolicyFile, if set, holds the server's org policies (guardrails).
	OrgPolicyFile string
	// ProcessImageDirs are directories whose executables anyone allowed to
	// deploy may run as file:// images; any other file:// image needs
	// PermHostExecutablesRun.
	ProcessImageDirs []string
	// Builder builds sources for `deploy --source` (nil: refused).
	Builder *build.Builder
	// Metrics, if set, answers services' metrics history.
	Metrics MetricsHistory
	// AccountEnabled, if set, reports whether a service account of Usher's
	// exists and is enabled (package accounts); a caller that is a deleted
	// or disabled account holds nothing.
	AccountEnabled func(email string) bool
	// AccountUsable, if set, reports whether a service account of Usher's
	// still exists with that unique ID and is enabled.
	AccountUsable func(email, uid string) bool
	// TokenURL is this server's OAuth token endpoint (PUBLIC_URL/token):
	// service-account key files name it, and a key's JWT must be addressed
	// to it. Empty: key files cannot be exchanged.
	TokenURL string
	Now      func() time.Time
	Log      *slog.Logger
}

// Core runs admin operations.
type Core struct {
	cfg     Config
	regions apis.RegionSet
}

// New returns a core.
func New(cfg Config) *Core {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Core{cfg: cfg, regions: apis.ServedRegions(cfg.DefaultRegion)}
}

// Roles is the predefined role catalogue.
func (c *Core) Roles() *iam.Roles { return c.cfg.Roles }

// Regions are the regions this server serves.
func (c *Core) Regions() []string { return c.regions.List() }

// DefaultRegion is the region used when a request names none.
func (c *Core) DefaultRegion() string { return c.cfg.DefaultRegion }

// Now is the core's clock.
func (c *Core) Now() time.Time { return c.cfg.Now() }

// Caller is who asks for an operation and how they authenticated.
type Caller struct {
	Principal iam.Principal
	// Via says which door they came through ("api", "console").
	Via string
	// Impersonator, when set, is the principal who signed in to the console
	// as Principal; every write is recorded with both.
	Impersonator string
	// AccountUID, for a service account authenticated without a token (a
	// console session), is the unique ID of the account it was issued for:
	// a re-created account of the same email is someone else.
	AccountUID string
}

// String names the caller for logs.
func (c *Caller) String() string {
	if c.Impersonator != "" {
		return c.Principal.String() + " (impersonated by " + c.Impersonator + ")"
	}
	return c.Principal.String()
}

// Error is an admin error: what the client sees (Code, Status, Message) and
// what only the log keeps (Err).
type Error struct {
	Code    int
	Status  string
	Message string
	Err     error
	// Violations name the offending fields of an INVALID_ARGUMENT.
	Violations []FieldViolation
}

// FieldViolation is one bad field of a request.
type FieldViolation struct {
	Field       string `json:"field"`
	Description string `json:"description"`
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an error with Google's status name.
func Errorf(code int, status, format string, args ...any) *Error {
	return &Error{Code: code, Status: status, Message: fmt.Sprintf(format, args...)}
}

// InvalidArgument is 400 INVALID_ARGUMENT.
func InvalidArgument(format string, args ...any) *Error {
	return Errorf(http.StatusBadRequest, "INVALID_ARGUMENT", format, args...)
}

// InvalidField turns a validation error into INVALID_ARGUMENT, naming the
// field when the error carries one.
func InvalidField(err error) *Error {
	e := InvalidArgument("%v", err)
	var fe *apis.FieldError
	if errors.As(err, &fe) {
		e.Violations = []FieldViolation{{Field: fe.Path, Description: fe.Message}}
	}
	return e
}

// FailedPrecondition is 400 FAILED_PRECONDITION.
func FailedPrecondition(format string, args ...any) *Error {
	return Errorf(http.StatusBadRequest, "FAILED_PRECONDITION", format, args...)
}

// NotFound is 404 NOT_FOUND.
func NotFound(format string, args ...any) *Error {
	return Errorf(http.StatusNotFound, "NOT_FOUND", format, args...)
}

// AlreadyExists is 409 ALREADY_EXISTS.
func AlreadyExists(format string, args ...any) *Error {
	return Errorf(http.StatusConflict, "ALREADY_EXISTS", format, args...)
}

// Aborted is 409 ABORTED: a stale etag or a lost compare-and-swap.
func Aborted(format string, args ...any) *Error {
	return Errorf(http.StatusConflict, "ABORTED", format, args...)
}

// Unauthenticated is 401 UNAUTHENTICATED.
func Unauthenticated(format string, args ...any) *Error {
	return Errorf(http.StatusUnauthorized, "UNAUTHENTICATED", format, args...)
}

// Unimplemented is 501 UNIMPLEMENTED.
func Unimplemented(format string, args ...any) *Error {
	return Errorf(http.StatusNotImplemented, "UNIMPLEMENTED", format, args...)
}

// PermissionDenied is 403 PERMISSION_DENIED in Google's words.
func PermissionDenied(perm, resource string) *Error {
	return Errorf(http.StatusForbidden, "PERMISSION_DENIED", "Permission '%s' denied on resource '%s' (or resource may not exist).", perm, resource)
}

// IsNotFound reports whether err is a NOT_FOUND answer.
func IsNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == http.StatusNotFound
}

// ErrConcurrentPolicy is Google's message for a stale etag.
const ErrConcurrentPolicy = "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff."

// authorize is the one permission check: caller must hold perm on resource
// through the policies of levels (a resource's ancestors first, then its
// own), as package iam decides it.
func (c *Core) authorize(caller *Caller, perm, resource string, levels ...iam.Level) error {
	if !c.holds(caller, perm, levels...) {
		return PermissionDenied(perm, resource)
	}
	return nil
}

// holds reports whether caller holds perm through levels, for answers that
// list permissions rather than refuse. A deleted or disabled service
// account holds nothing, whatever policies still name it.
func (c *Core) holds(caller *Caller, perm string, levels ...iam.Level) bool {
	if p := caller.Principal; p.Kind == iam.ServiceAccount {
		switch {
		case caller.AccountUID != "" && c.cfg.AccountUsable != nil && !c.cfg.AccountUsable(p.Email, caller.AccountUID):
			return false
		case c.cfg.AccountEnabled != nil && !c.cfg.AccountEnabled(p.Email):
			return false
		}
	}
	return c.cfg.Roles.CheckAt(caller.Principal, perm, c.cfg.Now(), levels...).Allowed
}

// write is one compare-and-swap change of one key.
type write struct {
	key string
	// value is stored as JSON; nil deletes the key.
	value any
	// expected is the revision the caller read (store.MustNotExist for a
	// create, store.AnyRevision to overwrite).
	expected int64
	// conflict is the error a lost compare-and-swap becomes (ABORTED or
	// ALREADY_EXISTS).
	conflict func() error
}

// change is one admin write: its writes, in order, and what the audit trail
// says of it.
type change struct {
	writes []write
	// done, if set, runs once the change has committed: in-memory cleanup
	// it implies (a deleted service's logs), never a store write. Every
	// store write a change implies is one of its writes, so that it commits
	// with the change or not at all.
	done   func()
	record audit.Record
}

// commit is the one write sequence: the change's writes and its audit
// record in one transaction, each write compare-and-swap (a conflict aborts
// the whole change with that write's conflict error, wrapping
// store.ErrConflict, and nothing is written), so no change is acknowledged
// without its record, on a full disk too; then a wait until the gateway's
// copy has caught up with the last revision written. It returns the
// revision of the first write (the resource's new etag).
func (c *Core) commit(ctx context.Context, caller *Caller, ch change) (int64, error) {
	rec, recorded := c.auditRecord(caller, ch.record)
	if len(ch.writes) == 0 {
		if recorded && c.cfg.Audit != nil {
			c.cfg.Audit.Record(ctx, rec)
		}
		if ch.done != nil {
			ch.done()
		}
		return 0, nil
	}
	ops := make([]store.Op, 0, len(ch.writes)+1)
	for _, w := range ch.writes {
		op, err := w.op()
		if err != nil {
			return 0, err
		}
		ops = append(ops, op)
	}
	if recorded && c.cfg.Audit != nil {
		key, value, r, err := c.cfg.Audit.Entry(rec)
		if err != nil {
			return 0, err
		}
		rec = r
		ops = append(ops, store.Op{Key: key, Value: value, Expected: store.MustNotExist})
	}
	revs, err := c.cfg.Store.Txn(ctx, ops)
	var failed *store.TxnError
	switch {
	case errors.As(err, &failed) && failed.Index < len(ch.writes):
		if w := ch.writes[failed.Index]; w.conflict != nil {
			return 0, lostRace(w.conflict(), failed)
		}
		return 0, lostRace(Aborted("%s was changed concurrently. Read it again and retry.", ch.writes[failed.Index].key), failed)
	case errors.As(err, &failed):
		return 0, lostRace(Aborted("The audit record's key was taken concurrently. Retry."), failed)
	case err != nil:
		return 0, err
	}
	first, last := revs[0], int64(0)
	for _, r := range revs[:len(ch.writes)] {
		last = max(last, r)
	}
	if recorded {
		c.cfg.Log.Info("admin write", "kind", rec.Kind, "resource", rec.Resource, "caller", caller.String())
		if c.cfg.Audit != nil {
			c.cfg.Audit.Committed(ctx, rec)
		}
	}
	if ch.done != nil {
		ch.done()
	}
	return first, c.waitFor(ctx, last)
}

// op is w as a store operation.
func (w write) op() (store.Op, error) {
	op := store.Op{Key: w.key, Expected: w.expected}
	if w.value != nil {
		b, err := json.Marshal(w.value)
		if err != nil {
			return op, fmt.Errorf("admin: encoding %s: %w", w.key, err)
		}
		op.Value = b
	}
	return op, nil
}

// lostRace is a commit's answer to a lost compare-and-swap: answer, which
// the client sees, carrying the store's error, so that an operation that
// reads again and retries can tell it from any other refusal (isLostRace).
func lostRace(answer error, failed *store.TxnError) error {
	var e *Error
	if errors.As(answer, &e) && e.Err == nil {
		e.Err = failed
		return e
	}
	return answer
}

// isLostRace reports whether err is a commit's lost compare-and-swap that
// reading again may win (ABORTED; not ALREADY_EXISTS or a precondition).
func isLostRace(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == "ABORTED" && errors.Is(err, store.ErrConflict)
}

// waitFor waits until the gateway's copy has applied revision rev.
func (c *Core) waitFor(ctx context.Context, rev int64) error {
	if rev <= 0 {
		return nil
	}
	return c.cfg.Sync.WaitFor(ctx, rev)
}

// auditRecord is what the trail says of a change by caller: r completed
// with who did it (and who they impersonated), where, and its status. It
// reports false when the change is not recorded (no Kind).
func (c *Core) auditRecord(caller *Caller, r audit.Record) (audit.Record, bool) {
	if r.Kind == "" {
		return r, false
	}
	r.Principal = caller.Principal.Member()
	if caller.Impersonator != "" {
		if r.Details == nil {
			r.Details = &audit.Details{}
		}
		r.Details.Impersonator = caller.Impersonator
	}
	r.Project, r.Region, r.Service = splitResource(r.Resource)
	if r.Status == 0 {
		r.Status = http.StatusOK
	}
	return r, true
}

// record puts an event on the audit trail outside of a change's
// transaction. Best effort: what it records has happened, so a failure is
// logged by the Auditor and not returned.
func (c *Core) record(ctx context.Context, caller *Caller, r audit.Record) {
	r, ok := c.auditRecord(caller, r)
	if !ok {
		return
	}
	c.cfg.Log.Info("admin write", "kind", r.Kind, "resource", r.Resource, "caller", caller.String())
	if c.cfg.Audit != nil {
		c.cfg.Audit.Record(ctx, r)
	}
}

// Record puts an event that is not a store write (a console sign-in as
// someone else) on the audit trail.
func (c *Core) Record(ctx context.Context, caller *Caller, r audit.Record) { c.record(ctx, caller, r) }

// splitResource reads projects/P[/locations/R/services/S] (other resources
// of a project give only P).
func splitResource(resource string) (project, region, service string) {
	parts := strings.Split(resource, "/")
	if len(parts) >= 2 && parts[0] == "projects" {
		project = parts[1]
	}
	if len(parts) == 6 && parts[2] == "locations" && parts[4] == "services" {
		region, service = parts[3], parts[5]
	}
	return project, region, service
}

// etagRevision checks an optional etag against the stored revision: "" is
// no precondition; a stale one is stale(). It returns the revision a write
// must expect.
func etagRevision(etag string, rev int64, stale func() error) (int64, error) {
	if etag == "" {
		return store.AnyRevision, nil
	}
	want, err := iam.ParseEtag(etag)
	if err != nil {
		return 0, InvalidArgument("etag: %v", err)
	}
	if want != rev {
		return 0, stale()
	}
	return rev, nil
}
