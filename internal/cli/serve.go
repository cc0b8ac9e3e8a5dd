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
	f.StringVar(&cfg.PublicURL, "public-url", "", "this server's (the cluster's, with --store etcd://) public URL: the tokens' issuer, and the scheme, host and port of every URL Usher renders (default http://localhost:PORT, https:// with TLS; with etcd, the one stored by the first node)")
	f.StringVar(&cfg.TLSCert, "tls-cert", "", "serve HTTPS with this certificate (PEM; a wildcard *.REGION.DOMAIN or SANs for the API and service hosts)")
	f.StringVar(&cfg.TLSKey, "tls-key", "", "the private key of --tls-cert (PEM)")
	f.StringVar(&cfg.ACMEEmail, "acme-email", "", "get certificates automatically with ACME (Let's Encrypt by default), for the API host and each service host on first use; this is the account's contact")
	f.StringVar(&cfg.ACMECA, "acme-ca", "", "ACME directory URL (default Let's Encrypt's production directory)")
	f.StringVar(&cfg.HTTPAddr, "http-addr", "", "with HTTPS: also listen here for plain HTTP (ACME HTTP-01 challenges; everything else is redirected to HTTPS)")
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
	f.StringVar(&cfg.TrustedProxies, "trusted-proxies", "", "CIDR,... of reverse proxies whose X-Forwarded-For names the client that anonymous rate limits charge (default: none; the connection's peer is charged)")
	f.StringVar(&cfg.InternalCIDRs, "internal-cidrs", "", "CIDR,... whose requests count as internal for services with --ingress=internal or internal-and-cloud-load-balancing, besides Usher's own instances (default: none)")
	f.StringArrayVar(&cfg.TrustedIssuers, "trusted-issuer", nil, "an external OIDC issuer URL whose identity tokens the gateway accepts (repeatable; groups from the \"groups\" claim)")
	f.DurationVar(&cfg.MaxStaleness, "max-staleness", 5*time.Second, "with an etcd store: how long this node serves after it last confirmed its state is current; after that every service request gets 503 and /readyz fails until it catches up")
	f.StringVar(&cfg.NodeName, "node-name", "", "this node's name in logs and in the store's per-node keys, no '/' or spaces (default: the hostname)")
	f.StringArrayVar(&cfg.ProcessImageDirs, "process-images", nil, "a directory whose executables anyone allowed to deploy may run as file:// images (repeatable); other file:// images need usher.hostExecutables.run (roles/run.admin, roles/owner)")
	f.IntVar(&cfg.DenialMaxRecords, "audit-max-denials", 0, "how many refused invocations the audit trail keeps, apart from admin records (default 50000)")
	f.BoolVar(&cfg.Reinitialize, "reinitialize", false, "start over on a data dir whose usher.db is missing, empty or corrupt (the file is moved aside; every service, policy and credential in it is lost)")
	f.StringVar(&cfg.MetricsAddr, "metrics-addr", "", "serve /metrics on this address only (e.g. 127.0.0.1:9090) instead of on the API hosts")
	f.DurationVar(&cfg.AdminTimeout, "admin-timeout", 30*time.Second, "deadline of every admin API call: a store that does not answer in time gets the caller 503 UNAVAILABLE")
	f.IntVar(&cfg.MaxConns, "max-conns", 0, "open connections this node accepts in all; more get 503 (default: the file descriptor limit less 1024; -1: no cap)")
	f.IntVar(&cfg.MaxConnsPerClient, "max-conns-per-client", 0, "open connections one client address (IPv6: /64) may hold; more get 429 (default 1000; -1: no cap)")
	f.DurationVar(&cfg.BodyIdleTimeout, "body-idle-timeout", 30*time.Second, "end a request whose body sends nothing for this long")
	f.BoolVar(&cfg.UnsandboxedProcesses, "unsandboxed-processes", false, "where file:// instances cannot be sandboxed (not root, no namespaces), run them anyway as Usher's user, with access to the host (every instance's log says so)")
	f.StringVar(&cfg.InstanceEgress, "instance-egress", "", "whether sandboxed file:// instances reach other hosts: internet (public addresses only, through the host with NAT; needs root), all (private networks too: the LAN) or none (only the gateway and the metadata server); default internet as root, none otherwise (pasta cannot filter destinations)")
	f.StringVar(&cfg.InstanceUser, "instance-user", "65534:65534", "UID[:GID] sandboxed file:// instances run as (never root)")
	return cmd
}
