package docker

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/usher-run/usher/internal/runtime"
)

// Secret volumes (runtime.Volume.Files) reach a container as read-only bind
// mounts of host directories. The engine gives no way to fill a tmpfs
// before the program starts, so the files are written on the host, in
// memory: under /dev/shm (a tmpfs) when the host has it, in a directory
// only root may enter, and removed with the container. A host without
// /dev/shm refuses secret volumes rather than write secrets to disk.

// volumeFilesRoot is where instances' secret files live on the host.
var volumeFilesRoot = "/dev/shm"

// writeVolumeFiles writes the files of vols' read-only volumes, each
// volume in a directory of its own under one directory for the instance
// (returned, to remove later; "" when there are none).
func (r *Runtime) writeVolumeFiles(vols []runtime.Volume, id string) (string, map[int]string, error) {
	var dirs map[int]string
	top := ""
	for i, v := range vols {
		if v.Files == nil {
			continue
		}
		if top == "" {
			if st, err := os.Stat(volumeFilesRoot); err != nil || !st.IsDir() {
				return "", nil, errors.New("secret volumes need " + volumeFilesRoot + " (a tmpfs) on the Docker host: secrets are never written to disk")
			}
			var err error
			if top, err = os.MkdirTemp(volumeFilesRoot, r.volumeFilesPrefix()+id+"-"); err != nil {
				return "", nil, fmt.Errorf("secret volume: %w", err)
			}
			dirs = map[int]string{}
		}
		dir := filepath.Join(top, strconv.Itoa(i))
		if err := os.Mkdir(dir, 0o755); err != nil {
			removeVolumeFiles(top)
			return "", nil, fmt.Errorf("secret volume: %w", err)
		}
		for _, f := range v.Files {
			if f.Name == "" || f.Name == "." || f.Name == ".." || strings.ContainsRune(f.Name, '/') {
				removeVolumeFiles(top)
				return "", nil, fmt.Errorf("secret volume at %s: %q is not a file name", v.Path, f.Name)
			}
			p := filepath.Join(dir, f.Name)
			err := os.WriteFile(p, f.Data, 0o600)
			if err == nil {
				err = os.Chmod(p, os.FileMode(f.Mode&0o777))
			}
			if err != nil {
				removeVolumeFiles(top)
				return "", nil, fmt.Errorf("secret volume at %s: %w", v.Path, err)
			}
		}
		dirs[i] = dir
	}
	return top, dirs, nil
}

// volumeFilesPrefix names this Usher's instances' directories (Usher's
// owner, hashed: another Usher on the host keeps its own).
func (r *Runtime) volumeFilesPrefix() string {
	sum := sha256.Sum256([]byte(r.cfg.Owner))
	return "usher-secrets-" + hex.EncodeToString(sum[:6]) + "-"
}

// cleanupVolumeFiles removes what a killed Usher left of its instances'
// secret files.
func (r *Runtime) cleanupVolumeFiles() {
	old, _ := filepath.Glob(filepath.Join(volumeFilesRoot, r.volumeFilesPrefix()+"*"))
	for _, dir := range old {
		removeVolumeFiles(dir)
	}
}

// removeVolumeFiles removes an instance's secret files ("" does nothing).
func removeVolumeFiles(top string) {
	if top != "" {
		os.RemoveAll(top)
	}
}
