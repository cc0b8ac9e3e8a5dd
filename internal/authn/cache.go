package authn

import (
	"fmt"
	"hash/maphash"
	"strings"
	"sync"
	"time"
)

// numShards spreads the cache over independent locks so concurrent requests
// rarely contend; a power of two so the shard index is a mask.
const numShards = 64

// cache remembers successfully verified tokens until they expire, so a token
// presented again costs a hash, a map lookup and a clock read instead of an RSA
// verification.
//
// Only verified tokens are inserted, so an attacker cannot fill it with junk;
// its memory is bounded by the entry limit times the size of tokens the issuer
// actually mints. A hit does not consult the KeySource again: a cached token
// stays valid until its exp even if its key is dropped, which is safe because
// keys are only dropped after every token they signed has expired.
type cache struct {
	seed     maphash.Seed
	perShard int
	shards   [numShards]shard
}

type shard struct {
	mu      sync.Mutex
	entries map[string]*entry
	// Pad to a cache line so neighbouring shards' locks don't false-share.
	_ [64 - 16]byte
}

type entry struct {
	id *Identity
	// deadline is exp + leeway: from then on the token is expired.
	deadline time.Time
}

func newCache(entries int) *cache {
	c := &cache{seed: maphash.MakeSeed(), perShard: (entries + numShards - 1) / numShards}
	for i := range c.shards {
		c.shards[i].entries = make(map[string]*entry)
	}
	return c
}

func (c *cache) shard(token string) *shard {
	return &c.shards[maphash.String(c.seed, token)&(numShards-1)]
}

// get returns (id, true, nil) on a live hit, (nil, true, err) for a cached
// token that has since expired (it is evicted), and ok=false on a miss.
func (c *cache) get(token string, now time.Time) (*Identity, bool, error) {
	s := c.shard(token)
	s.mu.Lock()
	e, ok := s.entries[token]
	if ok && !now.Before(e.deadline) {
		delete(s.entries, token)
		s.mu.Unlock()
		if now.Before(e.id.Expiry) { // cached for less than its life: verify again
			return nil, false, nil
		}
		return nil, true, fmt.Errorf("%w: at %s", ErrExpired, e.id.Expiry.UTC().Format(time.RFC3339))
	}
	s.mu.Unlock()
	if !ok {
		return nil, false, nil
	}
	return e.id, true, nil
}

func (c *cache) put(token string, id *Identity, deadline, now time.Time) {
	// Clone: token may be a slice of a larger request buffer we must not pin.
	token = strings.Clone(token)
	s := c.shard(token)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.entries[token]; !ok && len(s.entries) >= c.perShard {
		s.makeRoom(c.perShard, now)
	}
	s.entries[token] = &entry{id: id, deadline: deadline}
}

// makeRoom frees at least an eighth of the shard so that the O(n) sweep is
// amortised over many inserts. Expired entries go first; the rest are taken in
// map iteration order, which Go randomises, giving random eviction.
func (s *shard) makeRoom(limit int, now time.Time) {
	target := limit - max(1, limit/8)
	for k, e := range s.entries {
		if !now.Before(e.deadline) {
			delete(s.entries, k)
		}
	}
	for k := range s.entries {
		if len(s.entries) <= target {
			break
		}
		delete(s.entries, k)
	}
}
