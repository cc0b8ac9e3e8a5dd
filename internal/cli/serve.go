package cli

import (
	"log/slog"
	"os"
	"runtime/debug"
	"time"

	"github.com/spf13/cobra"

	"github.com/usher-run/usher/internal/server"
)

func newServeCmd(g *globals) *cobra.Command {
	var cfg server.Config
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run Usher: admin API, token issuer and gateway on one listener",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if os.Getenv("GOGC") == "" {
				// The gateway's live heap is small and its garbage is per
				// request: collecting at 4x the live heap instead of 2x
				// buys throughput for little memory (bench/README.md).
				debug.SetGCPercent(400)
			}
			cfg.Project, cfg.Region = g.project, g.region
			cfg.WriteUserConfig = true
			cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
			return server.Run(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Addr, "addr", "127.0.0.1:8080", "listen address")
	f.StringVar(&cfg.DataDir, "data-dir", "./usher-data", "where state, keys and the CLI configuration live")
	f.StringVar(&cfg.Domain, "domain", "run.localhost", "service hosts are NAME-PROJECTNUMBER.REGION.DOMAIN")
	f.StringVar(&cfg.PublicURL, "public-url", "", "this server's URL, the tokens' issuer (default http://localhost:PORT)")
	f.StringVar(&cfg.Store, "store", "", "state store: empty for a bbolt file in --data-dir, or etcd://HOST:PORT[,HOST:PORT…][/PREFIX]")
	f.StringVar(&cfg.EtcdCert, "etcd-cert", "", "TLS client certificate for etcd")
	f.StringVar(&cfg.EtcdKey, "etcd-key", "", "TLS client key for etcd")
	f.StringVar(&cfg.EtcdCA, "etcd-ca", "", "CA certificate that signed etcd's server certificate")
	f.BoolVar(&cfg.NoPull, "no-pull", false, "run only container images the Docker engine already has (never pull)")
	f.DurationVar(&cfg.ScaleToZeroGrace, "scale-to-zero-grace", 15*time.Minute, "how long an idle instance lives")
	f.DurationVar(&cfg.AuditMaxAge, "audit-retention", 30*24*time.Hour, "how long audit records are kept (usher logging read)")
	f.IntVar(&cfg.AuditMaxRecords, "audit-max-records", 100000, "how many audit records are kept at most")
	f.StringVar(&cfg.OrgPolicyFile, "org-policy-file", "", "org policies (guardrails) for every project, YAML or JSON; projects cannot lift them")
	f.StringVar(&cfg.TrustedIssuersFile, "trusted-issuers", "", "external OIDC issuers whose identity tokens the gateway accepts: a JSON or YAML list of {issuer: URL, groupsClaim: NAME}")
	f.StringArrayVar(&cfg.TrustedIssuers, "trusted-issuer", nil, "an external OIDC issuer URL whose identity tokens the gateway accepts (repeatable; groups from the \"groups\" claim)")
	f.DurationVar(&cfg.MaxStaleness, "max-staleness", 5*time.Second, "with an etcd store: how long this node serves after it last confirmed its state is current; after that every service request gets 503 and /readyz fails until it catches up")
	f.StringVar(&cfg.NodeName, "node-name", "", "this node's name in logs (default: the hostname)")
	f.BoolVar(&cfg.UnsandboxedProcesses, "unsandboxed-processes", false, "where file:// instances cannot be sandboxed (not root, no namespaces), run them anyway as Usher's user, with access to the host (every instance's log says so)")
	f.StringVar(&cfg.InstanceUser, "instance-user", "65534:65534", "UID[:GID] sandboxed file:// instances run as (never root)")
	return cmd
}
