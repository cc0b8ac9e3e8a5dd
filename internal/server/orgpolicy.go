package server

import (
	"fmt"
	"path/filepath"

	"github.com/usher-run/usher/internal/orgpolicy"
)

// checkOrgPolicyFile makes --org-policy-file absolute and refuses to start
// on a file that does not parse: the API reads it again on every write, so
// an edit takes effect without a restart, and a file broken later refuses
// IAM and service writes (fail closed) until it is fixed.
func (c *Config) checkOrgPolicyFile() error {
	if c.OrgPolicyFile == "" {
		return nil
	}
	abs, err := filepath.Abs(c.OrgPolicyFile)
	if err != nil {
		return fmt.Errorf("--org-policy-file: %w", err)
	}
	c.OrgPolicyFile = abs
	if _, err := orgpolicy.LoadFile(abs); err != nil {
		return err
	}
	return nil
}
