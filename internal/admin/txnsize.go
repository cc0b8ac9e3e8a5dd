package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/state"
)

// MaxTxnOps is the most operations Usher puts in one store transaction
// (a change's writes and its audit record): etcd's default --max-txn-ops.
// The bolt backend has no such limit, but a change is planned the same way
// on both, so what works on one node works on a cluster.
const MaxTxnOps = 128

// maxTxnBytes bounds the keys and values one transaction writes, under
// etcd's default --max-request-bytes (1.5 MiB) with room for the audit
// record and the request's framing.
const maxTxnBytes = 1 << 20

// commitAttempts bounds how many times an operation that lost a
// compare-and-swap to a concurrent change is run again from its reads.
const commitAttempts = 5

// retrying runs attempt (which reads, authorizes and commits) until it
// succeeds, fails other than by a lost compare-and-swap, or has run
// commitAttempts times.
func retrying(ctx context.Context, attempt func() error) error {
	for n := 1; ; n++ {
		err := attempt()
		if err == nil || !isLostRace(err) || n == commitAttempts || ctx.Err() != nil {
			return err
		}
	}
}

// fits reports whether writes and an audit record fit one transaction.
func fits(writes []write) (bool, error) {
	n, err := fitting(writes)
	return n == len(writes), err
}

// fitting is how many of writes, from the first, fit one transaction with
// an audit record (at least one, if there are any: a single write too
// large for the store is the store's to refuse).
func fitting(writes []write) (int, error) {
	size := 0
	for i, w := range writes {
		op, err := w.op()
		if err != nil {
			return 0, err
		}
		size += len(op.Key) + len(op.Value)
		if i > 0 && (i+1 > MaxTxnOps-1 || size > maxTxnBytes) {
			return i, nil
		}
	}
	return len(writes), nil
}

// memberRewrites are the writes that replace member from with to in every
// stored policy (project, service, job and service account policies) but
// the one at skip (a key the change deletes), each compare-and-swap on the
// revision read, so that a policy changed meanwhile fails the change rather
// than losing that change.
func (c *Core) memberRewrites(ctx context.Context, from, to, skip string) ([]write, error) {
	var writes []write
	for _, prefix := range []string{state.ProjectPoliciesPrefix, state.ServicePoliciesPrefix, state.ServiceAccountPoliciesPrefix, state.JobPoliciesPrefix} {
		entries, _, err := c.cfg.Store.List(ctx, prefix)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if e.Key == skip {
				continue
			}
			var p iam.Policy
			if err := json.Unmarshal(e.Value, &p); err != nil {
				return nil, fmt.Errorf("decoding %s: %w", e.Key, err)
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
			if changed {
				norm := p.Normalize()
				writes = append(writes, write{key: e.Key, value: &norm, expected: e.Revision})
			}
		}
	}
	return writes, nil
}
