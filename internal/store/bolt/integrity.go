package bolt

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrCorrupt marks a database file that bbolt cannot read: a page that fails
// its consistency check, or one that made bbolt panic.
var ErrCorrupt = errors.New("bolt: database file is corrupt")

// view and update run a transaction and turn a bbolt panic (bbolt panics on
// some corrupt pages instead of returning an error) into ErrCorrupt, so a
// damaged file fails the request that touched it, never the process.
func (s *Store) view(fn func(*bolt.Tx) error) (err error) {
	defer recoverCorrupt(s.path, &err)
	return s.db.View(fn)
}

func (s *Store) update(fn func(*bolt.Tx) error) (err error) {
	defer recoverCorrupt(s.path, &err)
	return s.db.Update(fn)
}

func recoverCorrupt(path string, err *error) {
	if p := recover(); p != nil {
		*err = fmt.Errorf("%w: %s: %v", ErrCorrupt, path, p)
	}
}

// Backup writes a consistent snapshot of the whole database to w (one
// read transaction: writers are not held up). The snapshot is itself a
// bbolt file: stopped Usher, copied to DATA_DIR/usher.db, it is the state
// at the moment Backup began.
func (s *Store) Backup(w io.Writer) (n int64, err error) {
	if s.closed() {
		return 0, fmt.Errorf("bolt: backup: store closed")
	}
	err = s.view(func(tx *bolt.Tx) error {
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

// Inspect opens the file at path read-only, checks every page, and returns
// how many keys it holds. It fails with ErrCorrupt when the file is not a
// sound bbolt database, and with ErrInUse when another process holds it.
func Inspect(path string) (keys int, err error) {
	defer recoverCorrupt(path, &err)
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if errors.Is(err, bolt.ErrTimeout) {
		return 0, fmt.Errorf("%w: %s", ErrInUse, path)
	}
	if errors.Is(err, os.ErrNotExist) {
		return 0, err
	}
	if err != nil {
		return 0, fmt.Errorf("%w: %s: %v", ErrCorrupt, path, err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		for cerr := range tx.Check() {
			if err == nil {
				err = cerr // the first problem is enough to name
			}
		}
		if err != nil {
			return err
		}
		if kv := tx.Bucket(kvBucket); kv != nil {
			keys = kv.Stats().KeyN
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("%w: %s: %v", ErrCorrupt, path, err)
	}
	return keys, nil
}

// ErrInUse marks a database file another process has open.
var ErrInUse = errors.New("bolt: database file is in use by another process")
