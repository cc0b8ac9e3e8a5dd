package state

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"

	"github.com/usher-run/usher/internal/store"
)

// Secret Manager's keys. A secret's versions share the prefix
// SecretVersionKey(p, name, "") and are numbered from 1.
const (
	SecretsPrefix        = "secrets/"
	SecretVersionsPrefix = "secretversions/"
	SecretPoliciesPrefix = "policies/secrets/"
	// SecretDataKeyKey holds the key that encrypts every secret version's
	// payload (SealSecret). It sits in the same store as what it
	// encrypts: whoever can read the whole store can read the secrets.
	// What it buys is that a copy of the secretversions/ prefix alone (a
	// partial export, a value pasted into a bug report, a store dump
	// filtered by prefix) holds no plaintext.
	SecretDataKeyKey = "secretdatakey/v1"
)

func SecretKey(p, name string) string { return SecretsPrefix + p + "/" + name }
func SecretVersionKey(p, name, version string) string {
	return SecretVersionsPrefix + p + "/" + name + "/" + version
}
func SecretPolicyKey(p, name string) string { return SecretPoliciesPrefix + p + "/" + name }

// Secret is a Secret Manager secret's record (its values are versions).
type Secret struct {
	Name       string            `json:"name"`
	CreateTime string            `json:"createTime"`
	Labels     map[string]string `json:"labels,omitempty"`
	// Replication is kept as the client sent it (Usher has one place).
	Replication map[string]any `json:"replication,omitempty"`
}

// SecretVersion is one value of a secret, sealed with the data key.
type SecretVersion struct {
	Version    int    `json:"version"`
	CreateTime string `json:"createTime"`
	// State is ENABLED, DISABLED or DESTROYED (no payload).
	State string `json:"state"`
	// Sealed is nonce || AES-256-GCM(payload), bound to the version's key.
	Sealed []byte `json:"sealed,omitempty"`
	// CRC32C is the payload's checksum, as Google reports it.
	CRC32C int64 `json:"crc32c"`
}

// VersionName is v's number as a path segment.
func (v SecretVersion) VersionName() string { return strconv.Itoa(v.Version) }

type secretDataKey struct {
	Key []byte `json:"key"`
}

// secretAEAD returns the cipher of the store's data key, generating and
// storing the key on first use (a concurrent first use loses the
// compare-and-swap and reads the winner's key).
func secretAEAD(ctx context.Context, st store.Store) (cipher.AEAD, error) {
	var k secretDataKey
	_, err := Get(ctx, st, SecretDataKeyKey, &k)
	if errors.Is(err, store.ErrNotFound) {
		k.Key = make([]byte, 32)
		if _, err := rand.Read(k.Key); err != nil {
			return nil, err
		}
		_, err = Put(ctx, st, SecretDataKeyKey, k, store.MustNotExist)
		if errors.Is(err, store.ErrConflict) {
			_, err = Get(ctx, st, SecretDataKeyKey, &k)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("state: secret data key: %w", err)
	}
	if len(k.Key) != 32 {
		return nil, errors.New("state: secret data key is malformed")
	}
	block, err := aes.NewCipher(k.Key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// SealSecret encrypts payload for the version stored at key (the key is the
// additional data, so a sealed value moved to another version or secret
// does not open).
func SealSecret(ctx context.Context, st store.Store, key string, payload []byte) ([]byte, error) {
	aead, err := secretAEAD(ctx, st)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(payload)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return aead.Seal(nonce, nonce, payload, []byte(key)), nil
}

// OpenSecret decrypts what SealSecret sealed for key.
func OpenSecret(ctx context.Context, st store.Store, key string, sealed []byte) ([]byte, error) {
	aead, err := secretAEAD(ctx, st)
	if err != nil {
		return nil, err
	}
	if len(sealed) < aead.NonceSize() {
		return nil, fmt.Errorf("state: sealed value of %s is truncated", key)
	}
	out, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], []byte(key))
	if err != nil {
		return nil, fmt.Errorf("state: sealed value of %s does not open: %w", key, err)
	}
	return out, nil
}
