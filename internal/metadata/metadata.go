// Package metadata is the GCE-style metadata server that Usher's instances
// call for their own identity: the server GCE_METADATA_HOST points them at.
// With it, Google's client libraries work inside an instance unchanged
// (cloud.google.com/go/compute/metadata, google.golang.org/api/idtoken,
// golang.org/x/oauth2/google's compute credentials), so a frontend service
// calls a private backend with nothing but a roles/run.invoker binding for its
// runtime service account.
//
// # Shape
//
// One listener per Network (a node has at most two: 127.0.0.1 for process
// instances, the Docker network's gateway for containers), on a random
// port; Registration.Host is the value for the instances' GCE_METADATA_HOST.
// Every revision (or job execution) registers an Identity under its key
// (PROJECT/REGION/REVISION) on its network; Network.Identify names, once per
// TCP connection, the key of the instance on the other end from the kernel's
// and the runtime's own facts (for the unsandboxed process runtime:
// ProcessInstances; sandboxed: SandboxedProcessInstances; Docker:
// DockerInstances), and the request is answered as that key's identity.
// Nothing a request says (path, parameters, headers) selects an identity.
// Registration.Close ends an identity: its instances' requests are refused
// from then on, and the listener stays for the others.
//
// # Docker instances
//
// A container cannot reach the host's loopback, so a revision run by the
// Docker runtime reach a listener on the host's address on the Docker
// network instead (Network.ListenHost = docker.Runtime.HostGateway, e.g.
// 172.17.0.1), not on all interfaces: it is reached by the host itself and
// by containers (of any Docker network on the host). A machine elsewhere
// that routes to that address through the host could connect too, but not
// from a container's address, since the kernel sends the replies for that
// address to the bridge, not back to it. Identify is DockerInstances: the
// connection's source address must be the container IP of a live instance
// that Usher itself started (docker.Runtime's own record of its key, never
// the container's labels, environment or request headers), or the
// connection is refused. Connections from the host (the gateway
// address) and from containers Usher did not start are refused. This needs
// the runtime to reach containers at their IPs (docker.AddrContainerIP,
// Linux with a local rootful engine); elsewhere (Docker Desktop, rootless)
// connections from containers are translated by the engine and cannot be
// told apart, and containers get no metadata server.
//
// Remaining risks of telling containers apart by address:
//
//   - Spoofing on the network: a container with the NET_RAW capability on
//     the same Docker network could forge another container's source address
//     or ARP-spoof it and so open a connection as that instance, and get its
//     revision's tokens. Usher's own containers run without NET_RAW (the
//     Docker runtime drops it), but a container started by other means on
//     the same network with Docker's defaults (which include NET_RAW) or
//     --privileged could — on the default network "bridge", that is any
//     container run with a plain `docker run` on the host. Keep Usher's
//     network to Usher's instances (docker.Config.Network) where that
//     matters; whoever can use the engine is root on the host anyway.
//   - Address reuse: the runtime forgets an instance as soon as it sees the
//     container exit; a container started by other means that gets the
//     freed address within that moment could pass for it.
//   - The check runs once per TCP connection; a connection lives no longer
//     than the container that opened it.
//
// # Endpoints
//
// Under /computeMetadata/v1/ (directories answer with or without a trailing
// slash, as a listing of one entry a line, or as JSON with ?recursive=true;
// leaves answer as text, or JSON with ?alt=json):
//
//	instance/service-accounts/{default|EMAIL}/identity?audience=A[&format=standard|full][&licenses=TRUE|FALSE]
//	    an identity token (a JWT, text) for the account: aud=A, email,
//	    email_verified, sub (the account's unique id), ≤1h. format=full is
//	    accepted and yields the same token (like Cloud Run's, it carries no
//	    google.compute_engine claims). Missing audience: 400.
//	instance/service-accounts/{default|EMAIL}/token[?scopes=S1,S2]
//	    {"access_token","expires_in","token_type":"Bearer"}: an access token
//	    for Usher's admin API (issuer.MintAccess), scope cloud-platform by
//	    default.
//	instance/service-accounts/{default|EMAIL}/{email,aliases,scopes}
//	instance/service-accounts/ and instance/service-accounts/{default|EMAIL}/
//	project/project-id, project/numeric-project-id
//	instance/region  projects/NUMBER/regions/REGION
//	instance/zone    projects/NUMBER/zones/REGION-1 (Usher has no zones)
//	instance/id      a stable number per registration (revision), not per instance
//	universe/universe-domain  googleapis.com
//
// plus "/", "/computeMetadata/" and "/computeMetadata/v1/" listings.
// ?wait_for_change=true (hanging gets) is not supported: 400. Only GET and
// HEAD are served.
//
// Every response carries "Metadata-Flavor: Google". Every request must carry
// exactly "Metadata-Flavor: Google" — the root "/" included, unlike GCE, whose
// root answers without it (libraries probe the root only at 169.254.169.254,
// never at GCE_METADATA_HOST, so nothing needs the exemption) — and no
// X-Forwarded-For header, else 403 with a plain-text body, as GCE does.
//
// Tokens are cached per registration and audience (identity) or scope set
// (access). An access token is reused until 5 minutes before it expires:
// clients read expires_in. An identity token is reused only for its first 4
// minutes, because the libraries do not look inside it: they assume a
// metadata identity token is good for an hour (idtoken reuses it for 55
// minutes, cloud.google.com/go/auth for 60 minus 5 early), so every identity
// token served must have at least that much life left. Either way an
// instance calling in a loop costs at most one RSA signature per few minutes.
//
// # What it must never do
//
//   - answer for an identity other than the one registered under the key
//     Identify found for the connection (no request parameter selects an
//     identity; the account email in a path must be that identity's own);
//   - answer anything without "Metadata-Flavor: Google", or with an
//     X-Forwarded-For header (a request relayed by a proxy the instance was
//     tricked into calling, SSRF-style);
//   - trust X-Forwarded-For or any other request header for who the caller
//     is: only Identify, on the kernel's view of the connection and the
//     runtime's record, decides;
//   - answer a connection Identify refused or could not decide (a panic or
//     an error is a refusal: 403), or whose key has no registration;
//   - hand out a token longer-lived than issuer.MaxTokenLifetime.
package metadata

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/issuer"
)

const (
	// idTokenReuse is how long a minted identity token is served again; see
	// the package doc.
	idTokenReuse = 4 * time.Minute
	// accessTokenMargin is how long before expiry a cached access token is
	// replaced.
	accessTokenMargin = 5 * time.Minute
	// maxCachedTokens bounds the token cache of one registration (audiences
	// are chosen by the instance).
	maxCachedTokens = 256
	// maxAudience bounds the audience parameter.
	maxAudience = 2048

	defaultScope = "https://www.googleapis.com/auth/cloud-platform"
	universe     = "googleapis.com"
)

// Minter mints tokens (the built-in issuer).
type Minter interface {
	MintAccess(subject, email, scope string, exp time.Time) (string, error)
	MintIdentity(subject, email string, audiences []string, exp time.Time) (string, error)
}

// Config configures a Server.
type Config struct {
	// Minter mints the tokens (the built-in issuer). Required.
	Minter Minter
	// AccountUsable, if set, reports whether a service account may still
	// get tokens (it exists, with this unique ID, and is enabled); tokens
	// for one that may not are refused.
	AccountUsable func(email, uniqueID string) bool
	// Now is the clock of the token cache; default time.Now.
	Now func() time.Time
	// Log receives refusals and errors; default discards.
	Log *slog.Logger
	// ListenHost is the IP address listeners bind; default 127.0.0.1.
	ListenHost string
}

// Network is where one kind of instance reaches the metadata server, and
// how its connections are told apart: one listener per Network, shared by
// every identity registered on it, so a node holds one metadata socket per
// network (loopback for process instances, the Docker network's gateway for
// containers), however many revisions run.
type Network struct {
	// ListenHost is the IP address the listener binds; default
	// Config.ListenHost. For the Docker runtime: the network's gateway
	// (docker.Runtime.HostGateway), the host as its containers reach it.
	ListenHost string

	// Identify names the registration (Identity.Key) of the instance on the
	// other end of a TCP connection, from the kernel's and the runtime's
	// facts: local and remote are the connection's addresses as the server
	// sees them. It runs once per connection; an error (or a panic) refuses
	// the connection's requests with 403 and is logged. Required: pass
	// ProcessInstances, SandboxedProcessInstances or DockerInstances.
	Identify func(local, remote netip.AddrPort) (key string, err error)
}

// Identity is what the metadata server answers as for the instances of one
// revision (or job execution).
type Identity struct {
	// Key names the revision uniquely across projects and regions (the
	// pool's key: PROJECT/REGION/REVISION); Network.Identify returns it for
	// the revision's instances. Required.
	Key string
	// ServiceAccount is the runtime service account's email (the service's
	// --service-account, else the project's default compute account).
	// Required.
	ServiceAccount string
	// UniqueID is the account's numeric unique id, the "sub" of its tokens as
	// in tokens the admin API mints for it (apis.ServiceAccount.UniqueID);
	// default ServiceAccount.
	UniqueID string
	// ProjectID is required; ProjectNumber defaults to
	// apis.ProjectNumber(ProjectID).
	ProjectID, ProjectNumber string
	// Region, e.g. us-central1. Required.
	Region string
	// Service and Revision name the revision the identity is registered
	// for; informational (logs, instance/id).
	Service, Revision string
}

func (id *Identity) validate() error {
	switch {
	case id.Key == "":
		return errors.New("metadata: identity key is required")
	case id.ServiceAccount == "" || !strings.Contains(id.ServiceAccount, "@") || strings.ContainsAny(id.ServiceAccount, "/?# \t\r\n"):
		return fmt.Errorf("metadata: service account %q is not an email", id.ServiceAccount)
	case id.ProjectID == "":
		return errors.New("metadata: project ID is required")
	case id.Region == "" || strings.Contains(id.Region, "/"):
		return fmt.Errorf("metadata: invalid region %q", id.Region)
	}
	if id.ProjectNumber == "" {
		id.ProjectNumber = apis.ProjectNumber(id.ProjectID)
	}
	if _, err := strconv.ParseUint(id.ProjectNumber, 10, 64); err != nil {
		return fmt.Errorf("metadata: project number %q is not a number", id.ProjectNumber)
	}
	if id.UniqueID == "" {
		id.UniqueID = id.ServiceAccount
	}
	return nil
}

// Server runs one metadata listener per Network, each answering as the
// identity its peer's instance is registered with. It is safe for
// concurrent use.
type Server struct {
	cfg Config

	mu        sync.Mutex
	listeners map[*Network]*listener
	closed    bool
}

// New returns a Server with no listeners yet.
func New(cfg Config) *Server {
	if cfg.Minter == nil {
		panic("metadata: Config.Minter is required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.ListenHost == "" {
		cfg.ListenHost = "127.0.0.1"
	}
	return &Server{cfg: cfg, listeners: map[*Network]*listener{}}
}

// listener is one Network's socket and the identities registered on it.
type listener struct {
	s    *Server
	net  *Network
	host string // IP:PORT, GCE_METADATA_HOST
	srv  *http.Server
	log  *slog.Logger

	mu   sync.RWMutex
	regs map[string]*Registration // by Identity.Key
}

// Registration is one identity on a Network's listener.
type Registration struct {
	l   *listener
	id  Identity
	log *slog.Logger

	instanceID string
	tokens     tokenCache

	closeOnce sync.Once
}

// ErrClosed is returned by Register after Close.
var ErrClosed = errors.New("metadata: server closed")

// Register answers as id, on n's listener (started at the first
// registration on n), for the instances n.Identify names by id.Key, until
// the registration is closed. Point the instances at it with
// GCE_METADATA_HOST=reg.Host(). Registering a key again replaces the
// earlier registration.
func (s *Server) Register(n *Network, id Identity) (*Registration, error) {
	if err := id.validate(); err != nil {
		return nil, err
	}
	if n == nil || n.Identify == nil {
		return nil, errors.New("metadata: a network with Identify is required")
	}
	l, err := s.listenerFor(n)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte("usher-instance:" + id.ProjectID + "/" + id.Region + "/" + id.Service + "/" + id.Revision + "/" + id.ServiceAccount))
	r := &Registration{
		l:          l,
		id:         id,
		log:        l.log.With("serviceAccount", id.ServiceAccount, "service", id.Service, "revision", id.Revision),
		instanceID: strconv.FormatUint(binary.BigEndian.Uint64(sum[:8])%9_000_000_000_000_000_000+1_000_000_000_000_000_000, 10),
		tokens:     tokenCache{m: map[string]cachedToken{}},
	}
	l.mu.Lock()
	l.regs[id.Key] = r
	l.mu.Unlock()
	return r, nil
}

// listenerFor returns n's listener, starting it if need be.
func (s *Server) listenerFor(n *Network) (*listener, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if l := s.listeners[n]; l != nil {
		return l, nil
	}
	host := s.cfg.ListenHost
	if n.ListenHost != "" {
		host = n.ListenHost
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return nil, fmt.Errorf("metadata: ListenHost %q must be an IP address: %w", host, err)
	}
	ln, err := net.Listen("tcp", netip.AddrPortFrom(ip, 0).String())
	if err != nil {
		return nil, fmt.Errorf("metadata: listen: %w", err)
	}
	l := &listener{s: s, net: n, host: ln.Addr().String(), regs: map[string]*Registration{}}
	l.log = s.cfg.Log.With("metadata", l.host)
	l.srv = &http.Server{
		Handler:           l,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(l.log.Handler(), slog.LevelDebug),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, newConnState(c))
		},
	}
	s.listeners[n] = l
	go func() {
		if err := l.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			l.log.Error("metadata: listener failed", "err", err)
		}
	}()
	return l, nil
}

// Host is the value for GCE_METADATA_HOST: "IP:PORT", the listener of the
// registration's network.
func (r *Registration) Host() string { return r.l.host }

// Identity returns the identity registered (defaults filled in).
func (r *Registration) Identity() Identity { return r.id }

// Close ends the registration: its instances' requests are refused from
// now on. It is idempotent. The network's listener stays, for the others.
func (r *Registration) Close() error {
	r.closeOnce.Do(func() {
		r.l.mu.Lock()
		if r.l.regs[r.id.Key] == r {
			delete(r.l.regs, r.id.Key)
		}
		r.l.mu.Unlock()
	})
	return nil
}

// Close stops every listener; later Register calls fail.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	ls := make([]*listener, 0, len(s.listeners))
	for _, l := range s.listeners {
		ls = append(ls, l)
	}
	s.listeners = map[*Network]*listener{}
	s.mu.Unlock()
	var errs []error
	for _, l := range ls {
		errs = append(errs, l.srv.Close())
	}
	return errors.Join(errs...)
}

// connState is the per-connection peer decision.
type connState struct {
	local, remote netip.AddrPort
	once          sync.Once
	key           string
	err           error
}

type connKey struct{}

func newConnState(c net.Conn) *connState {
	cs := &connState{}
	if a, ok := c.LocalAddr().(*net.TCPAddr); ok {
		cs.local = a.AddrPort()
	}
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		cs.remote = a.AddrPort()
	}
	return cs
}

// identify runs Identify once per connection (the client end of a TCP
// connection stays with the process that opened it) and returns the
// registration of the peer's instance. A refusal is logged once per
// connection.
func (l *listener) identify(ctx context.Context) (*Registration, error) {
	cs, _ := ctx.Value(connKey{}).(*connState)
	if cs == nil || !cs.local.IsValid() || !cs.remote.IsValid() {
		return nil, errors.New("not a TCP connection")
	}
	cs.once.Do(func() {
		cs.err = errors.New("peer identification did not complete")
		defer func() {
			if p := recover(); p != nil {
				cs.err = fmt.Errorf("peer identification panicked: %v", p)
			}
			if cs.err == nil && cs.key == "" {
				cs.err = errors.New("peer identified as no instance")
			}
			if cs.err != nil {
				l.log.Warn("metadata: refused a connection", "remote", cs.remote.String(), "err", cs.err)
			}
		}()
		cs.key, cs.err = l.net.Identify(cs.local, cs.remote)
	})
	if cs.err != nil {
		return nil, cs.err
	}
	// Looked up per request: a registration closed since (its revision
	// retired) answers nothing more.
	l.mu.RLock()
	r := l.regs[cs.key]
	l.mu.RUnlock()
	if r == nil {
		return nil, fmt.Errorf("no identity registered for %s", cs.key)
	}
	return r, nil
}

// ServeHTTP answers one metadata request as the identity of the peer's
// instance.
func (l *listener) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	h := w.Header()
	h.Set("Metadata-Flavor", "Google")
	h.Set("Server", "Metadata Server for Serverless")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "SAMEORIGIN")

	r, err := l.identify(req.Context())
	if err != nil {
		textError(w, http.StatusForbidden, "Forbidden: this metadata server answers only the instances Usher started.")
		return
	}
	if _, ok := req.Header["X-Forwarded-For"]; ok {
		textError(w, http.StatusForbidden, "Request had an X-Forwarded-For header and was rejected.")
		return
	}
	if v := req.Header.Values("Metadata-Flavor"); len(v) != 1 || v[0] != "Google" {
		textError(w, http.StatusForbidden, "Missing required header \"Metadata-Flavor\": \"Google\"")
		return
	}
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		textError(w, http.StatusMethodNotAllowed, "Method not allowed.")
		return
	}
	q := req.URL.Query()
	if b, _ := strconv.ParseBool(q.Get("wait_for_change")); b {
		textError(w, http.StatusBadRequest, "wait_for_change is not supported by this metadata server.")
		return
	}
	r.route(w, req, q)
}

func (r *Registration) route(w http.ResponseWriter, req *http.Request, q url.Values) {
	p := req.URL.Path
	switch p {
	case "/", "":
		writeText(w, "computeMetadata/\n")
		return
	case "/computeMetadata", "/computeMetadata/":
		writeText(w, "v1/\n")
		return
	}
	rest, ok := strings.CutPrefix(p, "/computeMetadata/v1")
	if !ok || (rest != "" && rest[0] != '/') {
		notFound(w)
		return
	}
	var segs []string
	if rest = strings.Trim(rest, "/"); rest != "" {
		segs = strings.Split(rest, "/")
	}
	switch {
	case len(segs) >= 3 && segs[0] == "instance" && segs[1] == "service-accounts":
		if !r.isAccount(segs[2]) {
			notFound(w)
			return
		}
		if len(segs) == 4 {
			switch segs[3] {
			case "identity":
				r.serveIdentity(w, q)
				return
			case "token":
				r.serveToken(w, q)
				return
			}
		}
	}
	tree := r.tree()
	node := any(tree)
	for _, s := range segs {
		dir, ok := node.(dirNode)
		if !ok {
			notFound(w)
			return
		}
		if node, ok = dir.get(s); !ok {
			notFound(w)
			return
		}
	}
	switch n := node.(type) {
	case dirNode:
		if b, _ := strconv.ParseBool(q.Get("recursive")); b || q.Get("alt") == "json" {
			writeJSON(w, n.json())
			return
		}
		writeText(w, n.listing())
	case leaf:
		if q.Get("alt") == "json" {
			writeJSON(w, n.json())
			return
		}
		writeText(w, n.text)
	}
}

// isAccount reports whether ref names this listener's account: "default" or
// its email. Nothing else, in particular no other account, resolves.
func (r *Registration) isAccount(ref string) bool {
	return ref == "default" || ref == r.id.ServiceAccount
}

// tree is the static part of the metadata, for listings and leaves.
func (r *Registration) tree() dirNode {
	id := r.id
	account := dirNode{
		{"aliases", leaf{text: "default\n", value: []string{"default"}}},
		{"email", leaf{text: id.ServiceAccount, value: id.ServiceAccount}},
		{"identity", nil}, // served by serveIdentity; listed only
		{"scopes", leaf{text: defaultScope + "\n", value: []string{defaultScope}}},
		{"token", nil},
	}
	zone := "projects/" + id.ProjectNumber + "/zones/" + id.Region + "-1"
	return dirNode{
		{"instance", dirNode{
			{"id", leaf{text: r.instanceID, value: json.Number(r.instanceID)}},
			{"region", leaf{text: "projects/" + id.ProjectNumber + "/regions/" + id.Region}},
			{"service-accounts", dirNode{
				{"default", account},
				{id.ServiceAccount, account},
			}},
			{"zone", leaf{text: zone}},
		}},
		{"project", dirNode{
			{"numeric-project-id", leaf{text: id.ProjectNumber, value: json.Number(id.ProjectNumber)}},
			{"project-id", leaf{text: id.ProjectID}},
		}},
		{"universe", dirNode{
			{"universe-domain", leaf{text: universe}},
		}},
	}
}

// dirNode is an ordered directory; a nil node is listed but not served
// statically.
type dirNode []dirEntry

type dirEntry struct {
	name string
	node any // dirNode, leaf or nil
}

type leaf struct {
	text  string
	value any // JSON value; default text
}

func (d dirNode) get(name string) (any, bool) {
	for _, e := range d {
		if e.name == name && e.node != nil {
			return e.node, true
		}
	}
	return nil, false
}

func (d dirNode) listing() string {
	var b strings.Builder
	for _, e := range d {
		b.WriteString(e.name)
		if _, ok := e.node.(dirNode); ok {
			b.WriteByte('/')
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// json renders the directory recursively with GCE's camelCase keys
// ("numeric-project-id" → "numericProjectId"); account emails stay as they
// are.
func (d dirNode) json() any {
	m := make(map[string]any, len(d))
	for _, e := range d {
		if e.node == nil {
			continue
		}
		key := e.name
		if !strings.Contains(key, "@") {
			key = camel(key)
		}
		switch n := e.node.(type) {
		case dirNode:
			m[key] = n.json()
		case leaf:
			m[key] = n.json()
		}
	}
	return m
}

func (l leaf) json() any {
	if l.value != nil {
		return l.value
	}
	return l.text
}

func camel(s string) string {
	parts := strings.Split(s, "-")
	for i := 1; i < len(parts); i++ {
		if parts[i] != "" {
			parts[i] = strings.ToUpper(parts[i][:1]) + parts[i][1:]
		}
	}
	return strings.Join(parts, "")
}

// serveIdentity answers …/identity?audience=A: an identity token for the
// registered account.
func (r *Registration) serveIdentity(w http.ResponseWriter, q url.Values) {
	auds := q["audience"]
	if len(auds) != 1 || strings.TrimSpace(auds[0]) == "" {
		textError(w, http.StatusBadRequest, "non-empty audience parameter required")
		return
	}
	aud := auds[0]
	if len(aud) > maxAudience {
		textError(w, http.StatusBadRequest, fmt.Sprintf("audience longer than %d bytes", maxAudience))
		return
	}
	switch f := q.Get("format"); f {
	case "", "standard", "full":
	default:
		textError(w, http.StatusBadRequest, fmt.Sprintf("format %q must be standard or full", f))
		return
	}
	switch l := strings.ToLower(q.Get("licenses")); l {
	case "", "true", "false":
	default:
		textError(w, http.StatusBadRequest, fmt.Sprintf("licenses %q must be TRUE or FALSE", l))
		return
	}
	now := r.l.s.cfg.Now()
	key := "id\x00" + aud
	// A disabled or deleted account gets nothing, not even a cached token.
	if !r.usable(w) {
		return
	}
	if t, ok := r.tokens.get(key, func(t cachedToken) bool { return now.Sub(t.minted) < idTokenReuse && !now.Before(t.minted) }); ok {
		writeToken(w, "text/plain; charset=utf-8", []byte(t.token))
		return
	}
	tok, err := r.l.s.cfg.Minter.MintIdentity(r.id.UniqueID, r.id.ServiceAccount, []string{aud}, time.Time{})
	if errors.Is(err, issuer.ErrReservedAudience) {
		textError(w, http.StatusBadRequest, "audience "+issuer.AdminAudience+" is reserved for access tokens")
		return
	}
	if err != nil {
		r.log.Error("metadata: minting an identity token", "err", err)
		textError(w, http.StatusInternalServerError, "Could not mint an identity token.")
		return
	}
	r.tokens.put(key, cachedToken{token: tok, minted: now, expiry: now.Add(issuer.MaxTokenLifetime)}, now)
	writeToken(w, "text/plain; charset=utf-8", []byte(tok))
}

// usable refuses tokens for an account that was deleted, re-created or
// disabled since the instance started.
func (r *Registration) usable(w http.ResponseWriter) bool {
	if f := r.l.s.cfg.AccountUsable; f != nil && !f(r.id.ServiceAccount, r.id.UniqueID) {
		textError(w, http.StatusForbidden, "The service account "+r.id.ServiceAccount+" is disabled or was deleted; no token is issued for it.")
		return false
	}
	return true
}

// serveToken answers …/token[?scopes=A,B]: an OAuth access token for Usher's
// admin API.
func (r *Registration) serveToken(w http.ResponseWriter, q url.Values) {
	var scopes []string
	for _, v := range q["scopes"] {
		for s := range strings.SplitSeq(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				scopes = append(scopes, s)
			}
		}
	}
	scope := strings.Join(scopes, " ")
	if len(scope) > maxAudience {
		textError(w, http.StatusBadRequest, fmt.Sprintf("scopes longer than %d bytes", maxAudience))
		return
	}
	if scope == "" {
		scope = defaultScope
	}
	now := r.l.s.cfg.Now()
	key := "at\x00" + scope
	if !r.usable(w) {
		return
	}
	t, ok := r.tokens.get(key, func(t cachedToken) bool { return now.Before(t.expiry.Add(-accessTokenMargin)) && !now.Before(t.minted) })
	if !ok {
		exp := now.Add(issuer.MaxTokenLifetime)
		tok, err := r.l.s.cfg.Minter.MintAccess(r.id.UniqueID, r.id.ServiceAccount, scope, exp)
		if err != nil {
			r.log.Error("metadata: minting an access token", "err", err)
			textError(w, http.StatusInternalServerError, "Could not mint an access token.")
			return
		}
		t = cachedToken{token: tok, minted: now, expiry: exp}
		r.tokens.put(key, t, now)
	}
	body, err := json.Marshal(map[string]any{
		"access_token": t.token,
		"expires_in":   int(t.expiry.Sub(now) / time.Second),
		"token_type":   "Bearer",
	})
	if err != nil {
		textError(w, http.StatusInternalServerError, "internal error")
		return
	}
	writeToken(w, "application/json", body)
}

// tokenCache holds minted tokens of one registration.
type tokenCache struct {
	mu sync.Mutex
	m  map[string]cachedToken
}

type cachedToken struct {
	token          string
	minted, expiry time.Time
}

func (c *tokenCache) get(key string, fresh func(cachedToken) bool) (cachedToken, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.m[key]
	if ok && fresh(t) {
		return t, true
	}
	return cachedToken{}, false
}

func (c *tokenCache) put(key string, t cachedToken, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[key]; !ok && len(c.m) >= maxCachedTokens {
		for k, old := range c.m {
			if !now.Before(old.minted.Add(idTokenReuse)) {
				delete(c.m, k)
			}
		}
		if len(c.m) >= maxCachedTokens {
			clear(c.m)
		}
	}
	c.m[key] = t
}

func writeText(w http.ResponseWriter, s string) {
	w.Header().Set("Content-Type", "application/text")
	w.Write([]byte(s))
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		textError(w, http.StatusInternalServerError, "internal error")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

func writeToken(w http.ResponseWriter, contentType string, body []byte) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Cache-Control", "no-store")
	w.Write(body)
}

func textError(w http.ResponseWriter, code int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write([]byte(msg + "\n"))
}

func notFound(w http.ResponseWriter) {
	textError(w, http.StatusNotFound, "Not Found: no such metadata key.")
}
