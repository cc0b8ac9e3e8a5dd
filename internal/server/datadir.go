package server

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/usher-run/usher/internal/store/bolt"
)

// markerName is a file the first start leaves in the data dir: with
// config.json it tells a data dir that has held state from a new one, so a
// lost database is never mistaken for a first start.
const markerName = "INITIALIZED"

// dbPath is the embedded store's file.
func dbPath(dataDir string) string { return filepath.Join(dataDir, "usher.db") }

// checkDataDir refuses to start on a data dir that has held state whose
// database is missing, empty or corrupt: starting would silently be a fresh
// install (every service, policy and credential gone, config.json replaced).
// With reinitialize the damaged file is moved aside and the start is fresh.
func checkDataDir(dataDir string, reinitialize bool, log *slog.Logger) error {
	path := dbPath(dataDir)
	evidence := ""
	for _, name := range []string{"config.json", markerName} {
		if _, err := os.Stat(filepath.Join(dataDir, name)); err == nil {
			evidence = filepath.Join(dataDir, name)
			break
		}
	}
	problem := ""
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if evidence != "" {
			problem = "is missing"
		}
	case err != nil:
		return fmt.Errorf("data dir: %w", err)
	case fi.Size() == 0:
		if evidence != "" {
			problem = "is empty (0 bytes)"
		}
	default:
		keys, err := bolt.Inspect(path)
		switch {
		case errors.Is(err, bolt.ErrInUse):
			return fmt.Errorf("%s is in use by another usher process: stop it first", path)
		case err != nil:
			problem = "is corrupt (" + err.Error() + ")"
		case keys == 0 && evidence != "":
			problem = "holds no state"
		}
	}
	if problem == "" {
		return nil
	}
	if !reinitialize {
		why := "; " + evidence + " shows this data dir has held state"
		if evidence == "" {
			why = ""
		}
		return fmt.Errorf("%s %s%s: restore it from a backup (stop usher, copy the file made by `usher backup --out FILE` to %s), or start over deliberately with `usher serve --reinitialize` (every service, policy and credential in it is lost)",
			path, problem, why, path)
	}
	if _, err := os.Stat(path); err == nil {
		aside := path + ".broken-" + time.Now().UTC().Format("20060102T150405Z")
		if err := os.Rename(path, aside); err != nil {
			return fmt.Errorf("--reinitialize: moving %s aside: %w", path, err)
		}
		log.Warn("--reinitialize: starting over; the old database was moved aside", "db", path, "moved_to", aside, "problem", problem)
	} else {
		log.Warn("--reinitialize: starting over", "db", path, "problem", problem)
	}
	return nil
}

// markInitialized leaves the marker once the data dir holds state.
func markInitialized(dataDir string) error {
	p := filepath.Join(dataDir, markerName)
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	return os.WriteFile(p, []byte("This data dir holds Usher state (usher.db). If usher.db goes missing, usher serve refuses to start rather than begin afresh: restore a backup or pass --reinitialize.\n"), 0o600)
}
