// Package server is Usher's composition root: it turns a Config into a running
// process (store, issuer, IAM, gateway, API, controller, instances) on one
// listener, and shuts it down in order. Nothing imports it but the CLI.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/usher-run/usher/internal/accounts"
	"github.com/usher-run/usher/internal/admin"
	"github.com/usher-run/usher/internal/api"
	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/authn"
	"github.com/usher-run/usher/internal/certstore"
	"github.com/usher-run/usher/internal/console"
	"github.com/usher-run/usher/internal/controller"
	"github.com/usher-run/usher/internal/gateway"
	"github.com/usher-run/usher/internal/grpcapi"
	"github.com/usher-run/usher/internal/history"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/iap"
	"github.com/usher-run/usher/internal/issuer"
	"github.com/usher-run/usher/internal/jobs"
	"github.com/usher-run/usher/internal/logs"
	"github.com/usher-run/usher/internal/metadata"
	"github.com/usher-run/usher/internal/mirror"
	"github.com/usher-run/usher/internal/pool"
	"github.com/usher-run/usher/internal/ratelimit"
	"github.com/usher-run/usher/internal/routing"
	"github.com/usher-run/usher/internal/runtime"
	"github.com/usher-run/usher/internal/runtime/docker"
	"github.com/usher-run/usher/internal/runtime/process"
	"github.com/usher-run/usher/internal/state"
	"github.com/usher-run/usher/internal/store"
)

// Config is everything `usher serve` takes.
type Config struct {
	Addr    string // listen address, default 127.0.0.1:8080
	DataDir string // default ./usher-data
	Domain  string // service hosts live under it, default run.localhost
	Project string // created on first start, default local-project
	Region  string // default region, us-central1
	// PublicURL is the server's own URL (the token issuer); it decides the
	// scheme, host and port of every URL Usher renders (API, console,
	// services). Default http://localhost:PORT, https:// under TLS.
	PublicURL string
	// TLSCert and TLSKey make Addr serve HTTPS (HTTP/2 by ALPN).
	TLSCert, TLSKey string
	// ACMEEmail turns on automatic certificates from ACMECA (default Let's
	// Encrypt): on demand, for the API host and the hosts of services.
	ACMEEmail, ACMECA string
	// HTTPAddr, if set, serves plain HTTP there: ACME HTTP-01 challenges,
	// and a redirect to HTTPS for everything else.
	HTTPAddr string
	// WriteUserConfig also writes ~/.config/usher/config.json when absent.
	WriteUserConfig bool
	// ScaleToZeroGrace is how long an idle instance lives (autoscaling).
	ScaleToZeroGrace time.Duration
	// NoPull makes the Docker runtime run only images the engine has.
	NoPull bool
	// Store is "" for the bbolt file in DataDir, or
	// etcd://HOST:PORT[,HOST:PORT…][/PREFIX]; EtcdCert, EtcdKey and EtcdCA
	// are its TLS client files.
	Store                     string
	EtcdCert, EtcdKey, EtcdCA string
	Log                       *slog.Logger
	// Ready, if set, receives the bound address once serving.
	Ready func(addr string)
	// AuditMaxAge and AuditMaxRecords bound the audit trail's retention
	// (0: package audit's defaults, 30 days and 100,000 records).
	AuditMaxAge     time.Duration
	AuditMaxRecords int
	// OrgPolicyFile, if set, holds org policies (guardrails) for every project.
	OrgPolicyFile string
	// TrustedIssuersFile (a JSON or YAML list) and TrustedIssuers (URLs)
	// name external OIDC issuers whose tokens the gateway accepts (issuers.go).
	TrustedIssuersFile string
	TrustedIssuers     []string
	// TrustedProxies ("CIDR,...") may name the client in X-Forwarded-For,
	// which anonymous rate limits charge; empty: the connection's peer is.
	TrustedProxies string
	// InternalCIDRs ("CIDR,...") are networks whose requests count as
	// internal for ingress, besides Usher's own instances (ingress.go).
	InternalCIDRs string
	// MaxStaleness bounds how long a node whose mirror cannot confirm it is
	// current keeps serving (etcd store only; default 5s): after it every
	// gateway request gets 503 and /readyz fails (health.go).
	MaxStaleness time.Duration
	// NodeName names this node in logs (default: the hostname).
	NodeName string
	// ProcessImageDirs are directories whose executables anyone allowed to
	// deploy may run as file:// images (any other needs
	// usher.hostExecutables.run).
	ProcessImageDirs []string
	// DenialMaxRecords bounds how many refused invocations the audit trail
	// keeps, apart from admin records (0: package audit's default).
	DenialMaxRecords int
	// MaxConns and MaxConnsPerClient cap open connections in total and per
	// client address (0: the default, negative: no cap; limits.go).
	MaxConns, MaxConnsPerClient int
	// Reinitialize starts afresh on a data dir whose database is missing,
	// empty or corrupt (moved aside) instead of refusing to start.
	Reinitialize bool
	// MetricsAddr, if set, serves /metrics on its own listener (and not on
	// API hosts), so it can be kept off the public address.
	MetricsAddr string
	// AdminTimeout bounds every admin API call (0: 30s); a store that does
	// not answer in time makes the call fail with 503 UNAVAILABLE.
	AdminTimeout time.Duration
	// BodyIdleTimeout ends a request whose body stalls longer than this
	// between two reads (0: 30s).
	BodyIdleTimeout time.Duration
	// UnsandboxedProcesses runs file:// instances as plain processes of
	// Usher's user where the sandbox (process.Sandbox) is not available;
	// every instance then says so in its logs. Without it such a machine
	// refuses to run file:// images.
	UnsandboxedProcesses bool
	// InstanceUser is the "UID[:GID]" sandboxed instances run as
	// (default 65534:65534, nobody).
	InstanceUser string
	// InstanceEgress is whether sandboxed instances reach other hosts:
	// "internet" (public addresses; the default as root), "all" (private
	// networks too; "nat" is the same) or "none" (loopback relays only; the
	// default without root).
	InstanceEgress string
}

func (c *Config) setDefaults() {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:8080"
	}
	if c.DataDir == "" {
		c.DataDir = "usher-data"
	}
	if c.Domain == "" {
		c.Domain = "run.localhost"
	}
	if c.Project == "" {
		c.Project = "local-project"
	}
	if c.Region == "" {
		c.Region = "us-central1"
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.MaxStaleness <= 0 {
		c.MaxStaleness = 5 * time.Second
	}
	if c.NodeName == "" {
		c.NodeName, _ = os.Hostname()
	}
	if c.AdminTimeout <= 0 {
		c.AdminTimeout = 30 * time.Second
	}
	if c.BodyIdleTimeout <= 0 {
		c.BodyIdleTimeout = defaultBodyIdleTimeout
	}
}

// OwnerEmail is the principal the first start makes project owner.
const OwnerEmail = "owner@usher.localhost"

// Run serves until ctx ends, then drains in-flight requests and stops
// instances. Shutdown order: stop accepting, drain HTTP, stop instances,
// close the store.
func Run(ctx context.Context, cfg Config) error {
	cfg.setDefaults()
	if err := cfg.checkOrgPolicyFile(); err != nil { // orgpolicy.go
		return err
	}
	// The node's name is a segment of store keys (metrics history chunks
	// metrics/…/NODE/…, lock owners): with a "/" one node's keys would fall
	// under another's prefix ("a" would list, and delete, "a/b"'s).
	if cfg.NodeName == "" || strings.ContainsAny(cfg.NodeName, "/ \t\r\n") {
		return fmt.Errorf("--node-name %q: want a name without '/' or spaces (default: the hostname)", cfg.NodeName)
	}
	log := cfg.Log.With("node", cfg.NodeName)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()

	tlsConf, err := tlsFromFiles(cfg.TLSCert, cfg.TLSKey) // tls.go
	if err != nil {
		return err
	}
	if tlsConf != nil && cfg.ACMEEmail != "" {
		return errors.New("--acme-email gets certificates automatically: leave out --tls-cert and --tls-key")
	}
	if cfg.HTTPAddr != "" && tlsConf == nil && cfg.ACMEEmail == "" {
		return errors.New("--http-addr redirects to HTTPS: it needs --tls-cert and --tls-key, or --acme-email")
	}
	var certs *acme
	var gwTable func() *routing.Table // set once the gateway exists
	var apiHost string
	if cfg.ACMEEmail != "" {
		certs = newACME(cfg, certstore.New(st, cfg.NodeName), func(host string) bool { // acme.go
			if host == apiHost {
				return true
			}
			if gwTable == nil {
				return false
			}
			t := gwTable()
			return t != nil && t.Lookup(host) != nil
		})
		tlsConf = certs.tlsConfig()
	}
	tcpLn, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	defer tcpLn.Close()
	ln := limitListener(tcpLn, cfg, tlsConf == nil, log.With("component", "listener")) // limits.go
	given := cfg.PublicURL != ""
	listenPort := fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
	pub, err := resolvePublicURL(cfg.PublicURL, tlsConf != nil, listenPort)
	if err != nil {
		return err
	}
	cfg.PublicURL = pub.String()
	if cfg.Store != "" {
		// Several nodes are one issuer: one public URL for all (publicurl.go).
		// Service URLs and audiences follow it, never this node's listener,
		// so a token for a service is good on every node.
		if cfg.PublicURL, err = clusterPublicURL(ctx, st, cfg.PublicURL, given); err != nil {
			return err
		}
		if pub, err = resolvePublicURL(cfg.PublicURL, tlsConf != nil, listenPort); err != nil {
			return err
		}
	}
	apiHost = pub.Host
	port := pub.Port // of the URLs Usher renders; "" for the scheme's default

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	iss, err := issuer.New(ctx, st, issuer.Config{URL: cfg.PublicURL})
	if err != nil {
		return fmt.Errorf("issuer: %w", err)
	}
	go iss.Watch(ctx)
	roles := iam.Predefined()
	if err := bootstrap(ctx, st, cfg); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	// Which service accounts may still authenticate: every token check, at
	// the gateway and the API, asks it (package accounts).
	go rotateOnSignal(ctx, iss, log) // publicurl.go
	live := accounts.New(st, log.With("component", "accounts"))
	if _, err := live.Sync(ctx); err != nil {
		return fmt.Errorf("loading service accounts: %w", err)
	}
	go live.Run(ctx)
	own := authn.New(authn.Config{Issuer: cfg.PublicURL, Keys: iss})
	verifier := accounts.Verifier{Next: own, Index: live}
	gwVerifier, err := gatewayVerifier(ctx, cfg, own, log.With("component", "authn")) // issuers.go
	if err != nil {
		return err
	}
	if cfg.Store == "" {
		if err := markInitialized(cfg.DataDir); err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
	}
	if err := writeTokenFile(iss, tokenFilePath(cfg.DataDir)); err != nil {
		return fmt.Errorf("writing the access token file: %w", err)
	}
	go keepTokenFresh(ctx, iss, tokenFilePath(cfg.DataDir), log)

	serviceURL := func(project, region, name string) string {
		return apis.ServiceURL(pub.Scheme, name, project, region, cfg.Domain, port)
	}
	jobLogs := logs.New[logs.Entry](0) // jobs' task output; services' is durable (startLogEntries)
	md := metadata.New(metadata.Config{Minter: iss, AccountUsable: live.Usable, Log: log.With("component", "metadata")})
	defer md.Close()
	runtimes, err := runtimesFor(ctx, cfg, ln.Addr().String(), log)
	if err != nil {
		return err
	}
	if d, ok := runtimes.Docker.(*docker.Runtime); ok {
		defer d.Close()
	}
	if p, ok := runtimes.Process.(*process.Runtime); ok {
		defer p.Close() // after the instances: removes the egress rules
	}
	mets := newMetrics(cfg.NodeName) // metrics.go
	mets.hist = history.New(st, cfg.NodeName)
	denials := logs.New[console.Denial](200)
	trail, stopAudit := startAudit(st, cfg, log.With("component", "audit")) // audit.go
	defer stopAudit()
	// The Logging API's entries (issue 14): instances' output and requests,
	// batched into the store off the hot path (logentries.go).
	entries, stopEntries := startLogEntries(st, trail, mets, cfg.NodeName, log.With("component", "logs"))
	defer stopEntries()
	identity := runtimeIdentity(st, md, runtimes)
	dialInstance := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if p, ok := runtimes.Process.(*process.Runtime); ok {
			return p.DialContext(ctx, network, addr) // sandboxed instances, by their netns
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	var secretCore atomic.Pointer[admin.Core] // set once the core exists, below
	// Secrets are read at each instance's or task's start, as its account
	// (admin/secrets.go): a revoked grant stops new ones.
	secretValue := func(ctx context.Context, project, account, secret, version string) ([]byte, error) {
		c := secretCore.Load()
		if c == nil {
			return nil, errors.New("the admin core is not ready")
		}
		return c.RuntimeSecretValue(ctx, project, account, secret, version)
	}
	instances := pool.New(pool.Config{
		Dial:     dialInstance, // startup and liveness probes
		Runtime:  runtimes,
		Identity: func(rev *apis.Revision) ([]runtime.EnvVar, func(), error) { return identity(pool.Key(rev), rev) },
		// Secrets in env are read at each start, as the revision's account
		// (admin/secrets.go): a revoked grant stops new instances.
		SecretValue:      secretValue,
		ScaleToZeroGrace: cfg.ScaleToZeroGrace,
		Log:              log.With("component", "instance"),
		OnColdStart:      mets.coldStart,
		OnOutput:         logOutput(entries), // durable: the Logging API and `usher run services logs read`
	})
	var mir *mirror.Mirror
	// The identity-aware proxy: sessions and assertions (package iap). Its
	// one-time links are asked for with an admin API access token.
	iapKeys, err := iap.LoadKeys(ctx, st, nil)
	if err != nil {
		return fmt.Errorf("iap keys: %w", err)
	}
	var adminAPI *api.API
	providers, err := cfg.iapProviders() // issuers.go
	if err != nil {
		return err
	}
	proxies, err := ratelimit.ParseProxies(cfg.TrustedProxies)
	if err != nil {
		return err
	}
	internal, err := ratelimit.ParseCIDRs("--internal-cidrs", cfg.InternalCIDRs)
	if err != nil {
		return err
	}
	signIn := iap.New(iap.Config{Keys: iapKeys, Store: st, PublicURL: cfg.PublicURL, Domain: cfg.Domain, Providers: providers,
		Authenticate: func(r *http.Request) (iam.Principal, error) { return adminAPI.Authenticate(r) }})
	gw := gateway.New(gateway.Config{
		Fresh:    func() bool { return mir.Fresh() },
		Verifier: accounts.Verifier{Next: gwVerifier, Index: live}, Instances: poolInstances{instances}, CLIAudience: issuer.CLIClientID,
		Log:              log.With("component", "gateway"),
		OnDenied:         logDenials(entries, auditDenials(trail, recordDenial(denials, mets))),
		IAP:              signIn,
		TrustedProxies:   proxies,
		InternalNetworks: internal,
		FromInstance:     fromInstance(runtimes), // ingress.go
		OnRouted:         logRouted(entries, mets.routed),
		DialInstance:     dialInstance,
	})
	gwTable = gw.Table
	// Jobs (issue 16): executions run on this node's runtimes with the
	// same metadata servers and logs as services' instances.
	runner := jobs.New(jobs.Config{
		Store: st, Runtime: runtimes, Identity: identity, Logs: jobLogs,
		Output:      logTaskLines(entries), // logentries.go
		SecretValue: secretValue,
		Node:        cfg.NodeName, Log: log.With("component", "jobs"),
	})
	if err := runner.Start(ctx); err != nil {
		return err
	}
	defer func() { cancel(); runner.Wait() }()
	ctrl := controller.New(controller.Config{Store: st, Instances: instances, ServiceURL: serviceURL, Log: log.With("component", "controller")})
	ctrl.Start(ctx)

	routes := &routeKeeper{roles: roles, domain: cfg.Domain, scheme: pub.Scheme, port: port} // routes.go
	mir = mirror.New(st, mirror.Config{
		MaxStaleness: cfg.MaxStaleness,
		Applied:      mets.applied,
		Decode:       decodeObject,
		// Each write changes only the entries it touches (issue 13).
		Changed: func(objects map[string]mirror.Object, keys []string, rev int64) {
			table, servicesChanged := routes.apply(objects, keys, rev)
			gw.SetTable(table)
			if servicesChanged {
				mets.forgetServices(table, keys) // a deleted service leaves no series
				if touchesProjects(keys) {
					keys = nil // a project's deletion or return changes all its services
				}
				ctrl.ObserveKeys(objects, keys)
			}
		},
		Log: log.With("component", "mirror"),
	})
	if err := mir.Sync(ctx); err != nil {
		return fmt.Errorf("loading state: %w", err)
	}
	if cfg.Store == "" {
		mir.AlwaysFresh() // bbolt is local: never behind
	}
	go mir.Run(ctx)
	go mir.Keep(ctx, 0)
	// The metrics history this node kept before (services deleted since
	// are forgotten), then kept up to date and written every 30 s.
	if err := mets.hist.Load(ctx, func(k history.Key) bool {
		t := gw.Table()
		return t != nil && t.HasService(routing.ServiceKey{Project: k.Project, Region: k.Region, Service: k.Service})
	}); err != nil {
		log.Warn("metrics history: not loaded; it starts empty", "err", err)
	}
	histDone := make(chan struct{})
	go func() {
		defer close(histDone)
		keepHistory(ctx, mets.hist, gw.Table, instances.Stats, log.With("component", "history")) // metrics.go
	}()
	defer func() { cancel(); <-histDone }()

	core := admin.New(admin.Config{
		Store: st, Roles: roles, Minter: iss, Sync: mir,
		DefaultRegion: cfg.Region, RootProject: cfg.Project, ServiceURL: serviceURL, Logs: jobLogs, Entries: entries,
		Audit: trail, OrgPolicyFile: cfg.OrgPolicyFile, ProcessImageDirs: cfg.ProcessImageDirs,
		AccountEnabled: live.Enabled, AccountUsable: live.Usable, TokenURL: strings.TrimRight(cfg.PublicURL, "/") + "/token",
		Log: log.With("component", "admin"), Builder: newBuilder(cfg.DataDir), // builds.go
		Metrics: mets.hist,
	})
	secretCore.Store(core)
	adminAPI = api.New(api.Config{Core: core, Verifier: verifier, Log: log.With("component", "api")})
	// The same API over gRPC, for Google's default Go clients: each call is
	// replayed through adminAPI (package grpcapi).
	gapi := grpcapi.New(adminDeadline(adminAPI, cfg.AdminTimeout))
	defer gapi.Stop()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	mux.Handle("GET /readyz", readyz(mir)) // health.go
	mets.watch(mir, cfg.NodeName)
	mets.reg.MustRegister(newInstanceCollector(cfg.NodeName, gw.Table, instances.Stats, instances.Usage))
	if cfg.MetricsAddr == "" {
		mux.Handle("GET /metrics", mets.handler())
	} else {
		stopMetrics, err := serveMetrics(cfg.MetricsAddr, mets.handler(), log) // metrics.go
		if err != nil {
			return err
		}
		defer stopMetrics()
	}
	mux.HandleFunc("GET /.well-known/openid-configuration", iss.Discovery)
	mux.HandleFunc("GET /oauth2/v3/certs", iss.JWKS)
	mux.HandleFunc("GET /oauth2/v1/certs", iss.Certs)
	mux.Handle("/", adminAPI)
	signIn.APIRoutes(mux)                                                                       // IAP sign-in pages and keys
	mux.Handle("GET "+BackupPath, backupHandler(st, verifier, log.With("component", "backup"))) // backup.go
	mux.Handle(gateway.ForwardAuthPath, gw.ForwardAuth(cfg.Domain))                             // nginx auth_request, Traefik forwardAuth, Envoy ext_authz
	mux.Handle("GET /{$}", rootPage(adminAPI))                                                  // rootpage.go: browsers are pointed at the console
	// Web console (issue 5): browser pages under /console/ on API hosts. It
	// calls adminAPI in-process as the signed-in principal (console.go).
	con, err := newConsole(cfg, st, roles, core, adminAPI, denialLog{denials}, log.With("component", "console"))
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	mux.Handle("/console/", con)

	srv := &http.Server{
		Handler:           bodyIdle(byHost(cfg.Domain, mets.countRequests(gw), gw.GuardIngress(signIn.ServiceHandler()), grpcOrREST(gapi, adminDeadline(mux, cfg.AdminTimeout))), cfg.BodyIdleTimeout),
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ConnContext:       relayedConns(runtimes), // ingress.go
	}
	serveErr := make(chan error, 1)
	// HTTP/2 over TLS by ALPN; without TLS, h2c with prior knowledge too, so
	// gRPC clients reach --use-http2 services on a plain listener.
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetHTTP2(tlsConf != nil)
	srv.Protocols.SetUnencryptedHTTP2(tlsConf == nil)
	if tlsConf != nil {
		srv.TLSConfig = tlsConf
		go func() { serveErr <- srv.ServeTLS(ln, "", "") }() // adds h2 to ALPN
	} else {
		go func() { serveErr <- srv.Serve(ln) }()
	}
	if cfg.HTTPAddr != "" {
		httpLn, err := net.Listen("tcp", cfg.HTTPAddr)
		if err != nil {
			return fmt.Errorf("--http-addr: %w", err)
		}
		var plain http.Handler = redirectToHTTPS(pub)
		if certs != nil {
			plain = certs.httpHandler(plain)
		}
		redirect := &http.Server{Handler: plain, ReadHeaderTimeout: readHeaderTimeout, IdleTimeout: idleTimeout, MaxHeaderBytes: maxHeaderBytes}
		go redirect.Serve(limitListener(httpLn, cfg, true, log.With("component", "http-listener")))
		defer redirect.Close()
	}
	// addr comes first on this line: tests and scripts read it.
	cfg.Log.Info("usher serving", "addr", ln.Addr().String(), "url", cfg.PublicURL, "domain", cfg.Domain,
		"data_dir", cfg.DataDir, "config", filepath.Join(cfg.DataDir, "config.json"), "node", cfg.NodeName)
	cfg.Log.Info("web console at "+cfg.PublicURL+"/console/", "console", cfg.PublicURL+"/console/")
	if cfg.Ready != nil {
		cfg.Ready(ln.Addr().String())
	}

	select {
	case err := <-serveErr:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down: draining in-flight requests")
	drainCtx, drainCancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer drainCancel()
	if err := srv.Shutdown(drainCtx); err != nil {
		log.Warn("drain incomplete", "err", err)
	}
	instances.Close(drainCtx)
	log.Info("stopped")
	return nil
}

// runtimesFor picks the runtime by image: file:// runs a local process; any
// other image runs on the local Docker engine when one answers, and deploying
// one fails with the engine's problem when none does. Containers a killed
// Usher left behind are removed first.
func runtimesFor(ctx context.Context, cfg Config, listenAddr string, log *slog.Logger) (runtime.ByImage, error) {
	pcfg, err := processConfig(cfg, listenAddr)
	if err != nil {
		return runtime.ByImage{}, err
	}
	p := process.New(pcfg)
	if ok, err := p.Sandboxed(); ok {
		egress, user := "none", fmt.Sprintf("%d:%d", pcfg.Sandbox.UID, pcfg.Sandbox.GID)
		hasEgress, egressErr := p.Egress()
		switch {
		case egressErr != nil:
			log.Warn("sandboxed file:// instances have NO egress (--instance-egress=all asked for it)", "err", egressErr)
		case hasEgress && os.Geteuid() == 0 && pcfg.Sandbox.EgressPrivate:
			egress = "all: the internet and private networks (veth pair with NAT)"
		case hasEgress && os.Geteuid() == 0:
			egress = "internet (veth pair with NAT; private networks blocked)"
		case hasEgress:
			egress = "all (pasta)"
			log.Warn("sandboxed file:// instances reach every host the machine reaches, through pasta, which filters no destination: a cloud VM's metadata server (169.254.169.254), the LAN, containers at their bridge addresses; run Usher as root for filtered egress, or --instance-egress=none")
		}
		if os.Geteuid() != 0 {
			user += fmt.Sprintf(" in a user namespace (uid %d on the host)", os.Geteuid())
		}
		log.Info("file:// instances run sandboxed", "user", user, "egress", egress)
		if err := p.Limits(); err != nil {
			log.Warn("sandboxed file:// instances get no cpu, memory or pids limits: this machine gives Usher no cgroups", "err", err)
		}
	} else if err != nil {
		log.Warn("file:// images cannot be deployed: instances cannot be sandboxed here; --unsandboxed-processes runs them as Usher's user, with access to the host", "err", err)
	} else {
		log.Warn("file:// instances are NOT sandboxed (--unsandboxed-processes): they run as Usher's user with access to the host, its files and every instance's port")
	}
	rts := runtime.ByImage{Process: p}
	owner, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		owner = cfg.DataDir
	}
	d, err := docker.New(ctx, docker.Config{Owner: owner, NoPull: cfg.NoPull, NoEgress: cfg.InstanceEgress == "none"})
	if err != nil {
		log.Info("no Docker engine: container images cannot be deployed (file:// images can)", "err", err)
		rts.DockerErr = err
		return rts, nil
	}
	if n, err := d.Cleanup(ctx); err != nil {
		log.Warn("removing containers left by a previous run failed", "err", err)
	} else if n > 0 {
		log.Info("removed containers left by a previous run", "containers", n)
	}
	if !d.DirectAddressing() || d.HostGateway() == "" {
		// See runtimeIdentity.
		log.Info("containers get no metadata server (GCE_METADATA_HOST): this engine's containers reach the host through its NAT or proxy, so their calls cannot be told apart",
			"engine", d.EngineHost())
	}
	rts.Docker = d
	return rts, nil
}

// processConfig configures the process runtime: sandboxed unless the
// operator asked otherwise, with what an instance must not see hidden and
// Usher's own listener (the gateway, the API) reachable inside.
func processConfig(cfg Config, listenAddr string) (process.Config, error) {
	if cfg.UnsandboxedProcesses {
		return process.Config{WarnUnsandboxed: true}, nil
	}
	sb := &process.Sandbox{Reach: []string{listenAddr}}
	switch cfg.InstanceEgress {
	case "":
		// The default: the internet as root, where the host's firewall
		// rules keep instances from the host, other instances, Docker's
		// bridges, link-local metadata servers and private networks.
		// Without root the egress is pasta's, which cannot filter
		// destinations (a cloud VM's metadata server, the LAN): the
		// operator asks for it with --instance-egress=all.
		sb.Egress = os.Geteuid() == 0
	case "internet":
		if os.Geteuid() != 0 {
			return process.Config{}, errors.New("--instance-egress=internet needs root (its filter is the host's firewall; pasta, used without root, filters no destination): all or none")
		}
		sb.Egress = true
	case "all", "nat":
		sb.Egress, sb.EgressPrivate = true, true
	case "none":
	default:
		return process.Config{}, fmt.Errorf("--instance-egress %q: want internet, all or none", cfg.InstanceEgress)
	}
	if cfg.InstanceUser != "" {
		u, g, hasG := strings.Cut(cfg.InstanceUser, ":")
		uid, err := strconv.Atoi(u)
		gid := uid
		if err == nil && hasG {
			gid, err = strconv.Atoi(g)
		}
		if err != nil || uid <= 0 || gid <= 0 {
			return process.Config{}, fmt.Errorf("--instance-user %q: want UID[:GID], not root", cfg.InstanceUser)
		}
		sb.UID, sb.GID = uid, gid
	}
	sb.Hide = append(sb.Hide, cfg.DataDir, cfg.EtcdCert, cfg.EtcdKey, cfg.EtcdCA, cfg.OrgPolicyFile, cfg.TrustedIssuersFile)
	if dir, err := os.UserConfigDir(); err == nil {
		sb.Hide = append(sb.Hide, filepath.Join(dir, "usher"))
	}
	if home, err := os.UserHomeDir(); err == nil {
		sb.Hide = append(sb.Hide, filepath.Join(home, ".config", "usher"))
	}
	if p := os.Getenv("USHER_CONFIG"); p != "" {
		sb.Hide = append(sb.Hide, p)
	}
	if os.Geteuid() != 0 {
		// Not root: the instance is Usher's own user on the host (in a
		// user namespace), so whatever that user may read is in reach;
		// its home (SSH keys, cloud credentials) is hidden whole.
		if home, err := os.UserHomeDir(); err == nil && home != "/" {
			sb.Hide = append(sb.Hide, home)
		}
	}
	return process.Config{Sandbox: sb}, nil
}

// runtimeIdentity gives each revision its metadata server: instances find it
// through GCE_METADATA_HOST and get tokens for the revision's service account
// only. Process instances (file://) share one listener on 127.0.0.1, which
// tells them apart by the kernel's and the process runtime's facts.
// Containers cannot reach the host's loopback: they share one listener on
// the Docker network's gateway, which tells them apart by their container
// IPs, as the Docker runtime recorded them (metadata.DockerInstances).
// That needs the runtime to address containers by IP; where it does not
// (Docker Desktop, a rootless engine), or without an engine, a container
// revision gets no GCE_METADATA_HOST.
//
// key is what the runtime records for the instances (runtime.InstanceSpec.Key):
// a revision's pool key, or a job execution's runtime.ExecutionKey, never
// the same for the two.
func runtimeIdentity(st store.Store, md *metadata.Server, rts runtime.ByImage) func(key string, rev *apis.Revision) ([]runtime.EnvVar, func(), error) {
	// One listener per kind of instance, shared by every revision.
	var processes, containers *metadata.Network
	if p, ok := rts.Process.(*process.Runtime); ok {
		processes = &metadata.Network{Identify: metadata.ProcessInstances(func(pgid int) (string, bool) {
			// Bounds the wait for an instance still starting (within the
			// metadata server's 30s write timeout).
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return p.WaitInstanceOfGroup(ctx, pgid)
		})}
		if sandboxed, _ := p.Sandboxed(); sandboxed {
			processes = &metadata.Network{Identify: metadata.SandboxedProcessInstances(p.InstanceAt)}
		}
	}
	if d, _ := rts.Docker.(*docker.Runtime); d != nil && d.DirectAddressing() && d.HostGateway() != "" {
		containers = &metadata.Network{ListenHost: d.HostGateway(), Identify: metadata.DockerInstances(func(ip netip.Addr) (string, bool) {
			// As above, for instances still starting.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			p, ok := d.WaitInstanceAt(ctx, ip)
			return p.Key, ok
		})}
	}
	return func(key string, rev *apis.Revision) ([]runtime.EnvVar, func(), error) {
		network := containers
		if runtime.IsFileImage(rev.Spec.Containers[0].Image) {
			network = processes
		}
		if network == nil {
			return nil, func() {}, nil
		}
		project := rev.Metadata.Namespace
		email := strings.ToLower(rev.Spec.ServiceAccountName)
		if email == "" {
			email = apis.DefaultServiceAccount(project)
		}
		var sa apis.ServiceAccount
		owner := project // an account may belong to another of Usher's projects
		if p := apis.ServiceAccountProject(email); p != "" {
			owner = p
		}
		if _, err := state.Get(context.Background(), st, state.ServiceAccountKey(owner, email), &sa); err != nil {
			sa.UniqueID = "" // a deleted or external account: sub is the email
		}
		reg, err := md.Register(network, metadata.Identity{
			Key:            key,
			ServiceAccount: email,
			UniqueID:       sa.UniqueID,
			ProjectID:      project,
			Region:         rev.Metadata.Labels[apis.LabelLocation],
			Service:        rev.Metadata.Labels[apis.LabelService],
			Revision:       rev.Metadata.Name,
		})
		if err != nil {
			return nil, nil, err
		}
		return []runtime.EnvVar{{Name: "GCE_METADATA_HOST", Value: reg.Host()}}, func() { reg.Close() }, nil
	}
}

// poolInstances adapts the pool to the gateway's view of it.
type poolInstances struct{ *pool.Pool }

func (p poolInstances) Acquire(ctx context.Context, key string, rev *apis.Revision) (gateway.Lease, error) {
	l, err := p.Pool.Acquire(ctx, key, rev)
	if err != nil {
		return nil, err // never a typed nil inside the interface
	}
	return l, nil
}

// grpcOrREST sends gRPC calls to the gRPC API and the rest to rest.
func grpcOrREST(g *grpcapi.Server, rest http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if grpcapi.IsGRPC(r) {
			g.ServeHTTP(w, r)
			return
		}
		rest.ServeHTTP(w, r)
	})
}

// byHost sends service hosts to the gateway (and their /_gcp_iap/ paths to
// the identity-aware proxy's sign-in) and everything else (API hosts, the
// issuer, the console) to the API mux.
func byHost(domain string, gw, iapPaths, apiMux http.Handler) http.Handler {
	suffix := "." + domain
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodConnect {
			// Clients using Usher as their HTTP proxy (gcloud) may try to
			// tunnel elsewhere; Usher is no general proxy.
			http.Error(w, "usher: CONNECT is not supported", http.StatusMethodNotAllowed)
			return
		}
		host := r.Host
		if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
			host = host[:i]
		}
		if len(host) > len(suffix) && strings.EqualFold(host[len(host)-len(suffix):], suffix) {
			if strings.HasPrefix(r.URL.Path, "/_gcp_iap/") {
				iapPaths.ServeHTTP(w, r)
				return
			}
			gw.ServeHTTP(w, r)
			return
		}
		apiMux.ServeHTTP(w, r)
	})
}

// decodeObject keeps what the gateway and controller need from the store.
func decodeObject(key string, value []byte) (any, bool, error) {
	var v any
	switch {
	case strings.HasPrefix(key, state.ServicesPrefix):
		v = new(apis.Service)
	case strings.HasPrefix(key, state.RevisionsPrefix):
		v = new(apis.Revision)
	case strings.HasPrefix(key, state.ServicePoliciesPrefix), strings.HasPrefix(key, state.ProjectPoliciesPrefix):
		v = new(iam.Policy)
	case strings.HasPrefix(key, state.RolesPrefix): // project custom roles
		v = new(iam.Role)
	case strings.HasPrefix(key, state.ProjectsPrefix): // a project being deleted serves nothing
		v = new(state.Project)
	default:
		return nil, false, nil
	}
	if err := json.Unmarshal(value, v); err != nil {
		return nil, false, err
	}
	return v, true, nil
}

func routingState(objects map[string]mirror.Object, rev int64, roles *iam.Roles, domain, scheme, port string) routing.State {
	st := routing.State{ProjectPolicies: map[string]*iam.Policy{}, Roles: roles, Domain: domain, Scheme: scheme, Port: port, Revision: rev}
	revisions := map[string]*apis.Revision{}
	for key, obj := range objects {
		switch v := obj.Value.(type) {
		case *apis.Revision:
			revisions[v.Metadata.Namespace+"/"+v.Metadata.Labels[apis.LabelLocation]+"/"+v.Metadata.Name] = v
		case *iam.Policy:
			if parts := state.SplitKey(key, state.ProjectPoliciesPrefix, 1); parts != nil {
				st.ProjectPolicies[parts[0]] = v
			}
		case *iam.Role:
			if parts := state.SplitKey(key, state.RolesPrefix, 2); parts != nil {
				st.AddCustomRole(parts[0], v)
			}
		}
	}
	for key, obj := range objects {
		s, ok := obj.Value.(*apis.Service)
		if !ok {
			continue
		}
		parts := state.SplitKey(key, state.ServicesPrefix, 3)
		if parts == nil || !state.ProjectServes(objects[state.ProjectKey(parts[0])].Value) {
			continue
		}
		ss := routing.ServiceState{Project: parts[0], Region: parts[1], Service: s, Revisions: map[string]*apis.Revision{}}
		names := []string{s.Status.LatestReadyRevisionName}
		for _, t := range s.Status.Traffic {
			names = append(names, t.RevisionName)
		}
		for _, name := range names {
			if r := revisions[parts[0]+"/"+parts[1]+"/"+name]; r != nil && name != "" {
				ss.Revisions[name] = r
			}
		}
		if p, ok := objects[state.ServicePolicyKey(parts[0], parts[1], parts[2])]; ok {
			ss.Policy = p.Value.(*iam.Policy)
		}
		st.Services = append(st.Services, ss)
	}
	return st
}
