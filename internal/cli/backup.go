package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/usher-run/usher/internal/client"
	"github.com/usher-run/usher/internal/store/bolt"
)

// newBackupCmd is `usher backup --out FILE`: a consistent snapshot of a
// running server's embedded store, taken through the API by its owner.
func newBackupCmd(g *globals) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "backup --out FILE",
		Short: "Save a consistent snapshot of the running server's state (owner only; embedded store)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("--out FILE is required")
			}
			c, _, err := g.client()
			if err != nil {
				return err
			}
			tmp, err := os.CreateTemp(filepath.Dir(out), ".usher-backup-*")
			if err != nil {
				return err
			}
			defer os.Remove(tmp.Name()) // after the rename, a no-op
			n, err := c.Download(cmd.Context(), client.BackupPath, tmp)
			if err == nil {
				err = tmp.Sync()
			}
			if cerr := tmp.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("backup: %w", err)
			}
			// A snapshot that does not check out is no backup.
			if _, err := bolt.Inspect(tmp.Name()); err != nil {
				return fmt.Errorf("backup: the snapshot received does not check out: %w", err)
			}
			if err := os.Chmod(tmp.Name(), 0o600); err != nil {
				return err
			}
			if err := os.Rename(tmp.Name(), out); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "Saved a snapshot of %d bytes to %s. To restore: stop usher serve, then `usher restore --from %s --data-dir DATA_DIR`.\n", n, out, out)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "file to write the snapshot to (mode 0600: it holds credentials and signing keys)")
	return cmd
}

// newRestoreCmd is `usher restore --from FILE --data-dir DIR`: puts a
// snapshot in place as DIR/usher.db while no server runs on DIR.
func newRestoreCmd(g *globals) *cobra.Command {
	var from, dataDir string
	cmd := &cobra.Command{
		Use:   "restore --from FILE --data-dir DIR",
		Short: "Put a snapshot from `usher backup` in place as the data dir's database (usher serve must be stopped)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" {
				return errors.New("--from FILE is required")
			}
			if _, err := bolt.Inspect(from); err != nil {
				return fmt.Errorf("%s is not a sound Usher snapshot: %w", from, err)
			}
			dst := filepath.Join(dataDir, "usher.db")
			if _, err := bolt.Inspect(dst); errors.Is(err, bolt.ErrInUse) {
				return fmt.Errorf("%s is in use: stop usher serve first", dst)
			}
			if err := os.MkdirAll(dataDir, 0o700); err != nil {
				return err
			}
			src, err := os.Open(from)
			if err != nil {
				return err
			}
			defer src.Close()
			tmp, err := os.CreateTemp(dataDir, ".usher-restore-*")
			if err != nil {
				return err
			}
			defer os.Remove(tmp.Name())
			_, err = io.Copy(tmp, src)
			if err == nil {
				err = tmp.Sync()
			}
			if cerr := tmp.Close(); err == nil {
				err = cerr
			}
			if err == nil {
				err = os.Chmod(tmp.Name(), 0o600)
			}
			if err != nil {
				return fmt.Errorf("restore: %w", err)
			}
			if _, err := os.Stat(dst); err == nil {
				if err := os.Rename(dst, dst+".before-restore"); err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "The previous database is kept as %s.\n", dst+".before-restore")
			}
			if err := os.Rename(tmp.Name(), dst); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "Restored %s from %s. Start usher serve --data-dir %s.\n", dst, from, dataDir)
			return nil
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "snapshot made by usher backup")
	cmd.Flags().StringVar(&dataDir, "data-dir", "./usher-data", "data dir of the stopped server")
	return cmd
}
