// Package docker is Usher's Docker runtime: any image reference other than
// file:// runs as a container on a Docker engine, driven through the engine's
// API with its Go client (never by running the docker CLI), following the
// same Cloud Run container contract as the process runtime and passing the
// same conformance suite (package runtimetest).
//
// An instance is one container. Its image is used as it is found on the
// engine; only an image missing there is pulled. Its environment is
// runtime.ContractEnv with PORT=8080 (as on Cloud Run), except that PATH and
// HOME come from the image and the engine unless the revision sets them:
// a container has its own filesystem, and Usher's environment never reaches
// it either way. --command replaces the image's ENTRYPOINT and --args its CMD
// (Cloud Run's semantics, which are Docker's). Resource limits
// (InstanceSpec.CPU and Memory) become the container's NanoCPUs and Memory,
// with no swap beyond the memory limit; a revision without a memory limit
// gets DefaultMemory (Cloud Run's default), and every container at most
// DefaultPids processes and threads, so no instance can exhaust the host. Output is attached from the start and
// passed on to InstanceSpec.Logs line by line. The instance is ready when its
// port accepts TCP connections. Stop sends SIGTERM to the container's main
// process, then SIGKILL after the grace period (through the engine's kill
// endpoint, timed by Usher: the engine's own stop timeout is in whole
// seconds); when the main process exits (by itself or stopped), the whole
// container is gone and is removed before Done is closed.
//
// Usher reaches an instance either at its container IP on the Docker network
// (Config.Addressing AddrContainerIP, the default on Linux with a local rootful
// engine) or at a port published on 127.0.0.1 (AddrPublished, the default
// elsewhere, e.g. Docker Desktop or a rootless engine). Instances reach the
// host as host.docker.internal (or at Runtime.HostGateway on the network),
// not at 127.0.0.1, which is their own; with AddrContainerIP, their
// connections to the host come from their container IP, which InstanceAt
// (or WaitInstanceAt, for a connection that may come from an instance still
// starting) maps back to the instance. Containers run without the NET_RAW
// capability (Docker grants it by default), so that an instance can neither
// forge its source address nor ARP-spoof another container's on the
// network: a server of Usher may tell instances apart by address (the
// metadata server does). Raw-socket tools such as ping do not work in an
// instance.
//
// Every container carries the labels usher.dev/managed=true and
// usher.dev/owner=Config.Owner (plus service, revision and instance), so that
// Cleanup, called when Usher starts, removes the containers a killed Usher
// left behind, and only those of this Usher.
//
// What it must never do: shell out to the docker CLI; pass Usher's own
// environment to a container; touch containers it did not label with its
// owner; give a container NET_RAW; leave a container (running or exited)
// behind after Start failed or Stop returned, or after an instance exited by
// itself; pull an image that is already on the engine.
package docker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/moby/moby/client/pkg/versions"

	"github.com/usher-run/usher/internal/runtime"
)

// Labels put on every container of Usher.
const (
	LabelManaged  = "usher.dev/managed" // "true"
	LabelOwner    = "usher.dev/owner"   // Config.Owner
	LabelService  = "usher.dev/service"
	LabelRevision = "usher.dev/revision"
	LabelInstance = "usher.dev/instance" // the instance ID
)

// ContainerPort is the PORT of every instance, inside its container.
const ContainerPort = 8080

// HostAlias is the name under which instances reach the host.
const HostAlias = "host.docker.internal"

// Addressing says how Usher reaches the port of an instance.
type Addressing string

const (
	// AddrAuto picks AddrContainerIP on Linux with a local, rootful engine
	// (unix socket), else AddrPublished.
	AddrAuto Addressing = ""
	// AddrContainerIP dials the container's IP on the Docker network, port
	// 8080: no host port is used, and the startup probe sees the app itself.
	AddrContainerIP Addressing = "container-ip"
	// AddrPublished publishes port 8080 on Config.PublishIP with a random
	// host port and dials that.
	AddrPublished Addressing = "published"
)

// Config configures the Docker runtime.
type Config struct {
	// Owner identifies this Usher, for example the absolute path of its data
	// directory; required. Its containers are labelled with it and Cleanup
	// removes only containers carrying it.
	Owner string

	// Host is the engine's address (unix:///var/run/docker.sock,
	// tcp://HOST:2376, ...); empty means $DOCKER_HOST, else the platform's
	// default. $DOCKER_TLS_VERIFY, $DOCKER_CERT_PATH and $DOCKER_API_VERSION
	// are honoured as by the docker CLI.
	Host string

	// Network is the name of the Docker network instances join; default
	// DefaultNetwork, created when missing. "host" and "none" are refused:
	// every instance listens on port 8080 of its own network namespace.
	Network string

	// Addressing says how Usher reaches instances; default AddrAuto.
	Addressing Addressing

	// PublishIP is the host address published ports bind to with
	// AddrPublished; default 127.0.0.1.
	PublishIP string

	// PingTimeout bounds New's check that the engine answers; default 10s.
	PingTimeout time.Duration

	// NoPull runs only images the engine already has: a missing image fails
	// at once instead of reaching for a registry.
	NoPull bool

	// NoEgress, with the default network, puts instances on
	// NoEgressNetwork instead: they reach the host (Usher's gateway and
	// metadata server) but no other host.
	NoEgress bool
}

// Runtime runs container images as instances on a Docker engine.
type Runtime struct {
	cfg       Config
	c         *client.Client
	network   string
	direct    bool       // AddrContainerIP
	publishIP netip.Addr // AddrPublished
	dialIP    netip.Addr // where published ports are dialled
	gateway   string     // the network's gateway: the host, seen from instances
	hostAlias bool       // the engine knows "host-gateway"

	mu   sync.Mutex
	byIP map[netip.Addr]*instance // live instances, with AddrContainerIP
	// launches are those whose container may already have an address that
	// byIP does not know yet, until the launch registered it or failed.
	launches runtime.Launches
}

var _ runtime.Runtime = (*Runtime)(nil)

// New connects to the engine and checks that it answers. When it does not,
// the error names the engine's address and the problem, e.g.
// "docker: no engine at unix:///var/run/docker.sock: ...".
func New(ctx context.Context, cfg Config) (*Runtime, error) {
	if cfg.Owner == "" {
		return nil, errors.New("docker: Config.Owner is required: it labels this Usher's containers")
	}
	if cfg.Network == "" {
		cfg.Network = DefaultNetwork
		if cfg.NoEgress {
			cfg.Network = NoEgressNetwork
		}
	}
	switch cfg.Network {
	case "host", "none":
		return nil, fmt.Errorf("docker: network %q cannot be used: each instance needs its own network namespace", cfg.Network)
	}
	if cfg.PublishIP == "" {
		cfg.PublishIP = "127.0.0.1"
	}
	publishIP, err := netip.ParseAddr(cfg.PublishIP)
	if err != nil {
		return nil, fmt.Errorf("docker: PublishIP: %w", err)
	}
	if cfg.PingTimeout <= 0 {
		cfg.PingTimeout = 10 * time.Second
	}
	opts := []client.Opt{client.FromEnv}
	if cfg.Host != "" {
		opts = append(opts, client.WithHost(cfg.Host))
	}
	c, err := client.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker: engine client: %w", err)
	}
	r := &Runtime{cfg: cfg, c: c, network: cfg.Network, publishIP: publishIP, dialIP: publishIP, byIP: map[netip.Addr]*instance{}}
	if publishIP.IsUnspecified() {
		r.dialIP = netip.MustParseAddr("127.0.0.1")
	}
	if err := r.connect(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return r, nil
}

func (r *Runtime) connect(ctx context.Context) error {
	host := r.c.DaemonHost()
	ctx, cancel := context.WithTimeout(ctx, r.cfg.PingTimeout)
	defer cancel()
	if _, err := r.c.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		if cerrdefs.IsInvalidArgument(err) {
			return fmt.Errorf("docker: engine at %s is not supported: %w", host, err)
		}
		return fmt.Errorf("docker: no engine at %s: %w", host, err)
	}
	info, err := r.c.Info(ctx, client.InfoOptions{})
	if err != nil {
		return fmt.Errorf("docker: engine at %s: info: %w", host, err)
	}
	if info.Info.OSType != "" && info.Info.OSType != "linux" {
		return fmt.Errorf("docker: engine at %s runs %s containers; Usher runs Linux containers", host, info.Info.OSType)
	}
	// "host-gateway" in ExtraHosts appeared with API 1.41 (Docker 20.10).
	r.hostAlias = versions.GreaterThanOrEqualTo(r.c.ClientVersion(), "1.41")

	switch r.cfg.Addressing {
	case AddrContainerIP:
		r.direct = true
	case AddrPublished:
	case AddrAuto:
		u, err := url.Parse(host)
		local := err == nil && u.Scheme == "unix"
		rootless := slices.ContainsFunc(info.Info.SecurityOptions, func(s string) bool {
			return strings.Contains(s, "name=rootless")
		})
		r.direct = goruntime.GOOS == "linux" && local && !rootless
	default:
		return fmt.Errorf("docker: unknown Addressing %q", r.cfg.Addressing)
	}
	if (r.network == DefaultNetwork || r.network == NoEgressNetwork) && !r.direct {
		// Published ports reach containers through the engine's proxy,
		// which does not work reliably on a network without
		// inter-container traffic: such engines (Docker Desktop,
		// rootless) keep the default bridge.
		r.network = "bridge"
	}
	managed := r.network == DefaultNetwork || r.network == NoEgressNetwork
	nw, err := r.c.NetworkInspect(ctx, r.network, client.NetworkInspectOptions{})
	if err != nil && managed && cerrdefs.IsNotFound(err) {
		_, cerr := r.c.NetworkCreate(ctx, r.network, client.NetworkCreateOptions{
			Driver:   "bridge",
			Internal: r.network == NoEgressNetwork,
			Options:  map[string]string{iccOption: "false"},
			Labels:   map[string]string{LabelManaged: "true"},
		})
		if cerr != nil && !cerrdefs.IsConflict(cerr) { // another Usher may have just made it
			return fmt.Errorf("docker: engine at %s: creating network %q: %w", host, r.network, cerr)
		}
		nw, err = r.c.NetworkInspect(ctx, r.network, client.NetworkInspectOptions{})
	}
	if err != nil {
		return fmt.Errorf("docker: engine at %s: network %q: %w", host, r.network, err)
	}
	if managed && nw.Network.Options[iccOption] != "false" {
		// Fail closed: on it, one service's container reaches another's.
		return fmt.Errorf("docker: engine at %s: network %q lets containers talk to each other (%s is not false); remove it and Usher recreates it", host, r.network, iccOption)
	}
	if r.network == NoEgressNetwork && !nw.Network.Internal {
		return fmt.Errorf("docker: engine at %s: network %q is not internal (its containers reach other hosts); remove it and Usher recreates it", host, r.network)
	}
	for _, ipam := range nw.Network.IPAM.Config {
		if ipam.Gateway.Is4() {
			r.gateway = ipam.Gateway.String()
			break
		}
	}
	if r.gateway == "" && r.direct {
		// Engines may leave the gateway out of the network's IPAM config
		// (the default bridge often does): with containers on this host,
		// it is the bridge interface's own address.
		r.gateway = bridgeAddr(nw.Network)
	}
	return nil
}

// DefaultNetwork is the bridge network instances join unless
// Config.Network names another. Usher creates it with inter-container
// communication disabled: a container reaches the host (Usher's gateway, its
// metadata server) and, through NAT, the internet, but no other container,
// so no service's instance bypasses another service's IAM. It is used with
// AddrContainerIP only; with AddrPublished instances join "bridge" (see
// connect).
const DefaultNetwork = "usher-instances"

// NoEgressNetwork is DefaultNetwork for Config.NoEgress (`usher serve
// --instance-egress=none`): also internal, so the engine routes nothing from
// it to other hosts; the host itself, at the network's gateway, stays
// reachable.
const NoEgressNetwork = "usher-instances-noegress"

// iccOption turns inter-container traffic on a bridge network on or off.
const iccOption = "com.docker.network.bridge.enable_icc"

// bridgeAddr is the IPv4 address, within the network's subnets, of the host
// interface of a bridge network, or "" if there is none on this host.
func bridgeAddr(nw network.Inspect) string {
	if nw.Driver != "bridge" {
		return ""
	}
	name := nw.Options["com.docker.network.bridge.name"]
	if name == "" && len(nw.ID) >= 12 {
		name = "br-" + nw.ID[:12] // the engine's name for user-defined bridges
	}
	iface, err := net.InterfaceByName(name)
	if err != nil {
		return ""
	}
	addrs, err := iface.Addrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipn.IP)
		if !ok || !ip.Unmap().Is4() {
			continue
		}
		ip = ip.Unmap()
		inSubnet := len(nw.IPAM.Config) == 0
		for _, c := range nw.IPAM.Config {
			if c.Subnet.Contains(ip) {
				inSubnet = true
			}
		}
		if inSubnet {
			return ip.String()
		}
	}
	return ""
}

// Close releases the client's connections. Running instances are left alone.
func (r *Runtime) Close() error { return r.c.Close() }

// EngineHost is the address of the engine, e.g. unix:///var/run/docker.sock.
func (r *Runtime) EngineHost() string { return r.c.DaemonHost() }

// HostGateway is the host's address on the instances' network (e.g.
// 172.17.0.1): the gateway of the network's IPAM config, else, with
// AddrContainerIP, the address of the network's bridge interface on this
// host; "" if neither is known. A server of Usher that instances must call
// (the metadata server) must listen there, and instances can name it
// HostAlias. Docker Desktop routes HostAlias to the host's loopback instead.
func (r *Runtime) HostGateway() string { return r.gateway }

// DirectAddressing reports whether Usher reaches instances at their
// container IPs (AddrContainerIP, chosen or picked by AddrAuto): only then do
// their connections to the host keep their container IP as source, so that
// InstanceAt can tell which instance calls. Elsewhere (AddrPublished, e.g.
// Docker Desktop or a rootless engine) connections from containers reach the
// host through the engine's NAT or proxy and cannot be told apart.
func (r *Runtime) DirectAddressing() bool { return r.direct }

// Peer is what InstanceAt tells about an instance.
type Peer struct {
	ID                string // the instance ID
	Service, Revision string
	Key               string // runtime.InstanceSpec.Key
}

// InstanceAt returns the live instance of this runtime whose container has
// the address ip on the network. It works with AddrContainerIP only (else it
// finds nothing): connections from a container to the host (say, to a server
// listening on HostGateway) come from its container IP, not translated, so
// a server of Usher can tell which instance calls it from the connection's
// remote address. An instance is known from shortly after its container
// started (before Start returns) until its container is seen to exit, which
// is when its address may go to another container.
//
// Caveat: the answer is only as good as the source address of the
// connection. Usher's containers run without NET_RAW and cannot forge it,
// but any other container on the same network that has NET_RAW (one started
// by hand with Docker's defaults, or --privileged) could spoof the address of
// an instance; and anyone who can use the engine is root on the host anyway.
func (r *Runtime) InstanceAt(ip netip.Addr) (Peer, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.peerLocked(ip)
}

func (r *Runtime) peerLocked(ip netip.Addr) (Peer, bool) {
	in, ok := r.byIP[ip.Unmap()]
	if !ok {
		return Peer{}, false
	}
	return Peer{ID: in.id, Service: in.service, Revision: in.revision, Key: in.key}, true
}

// WaitInstanceAt is InstanceAt for a connection that came from ip: when no
// live instance has ip, it waits until every launch in progress at the time
// of the call has learnt its container's address (or failed), then looks
// again. An instance may connect to the host from its first instruction,
// before the engine has told Usher its address, and a container that already
// has ip when the call is made was necessarily started by a launch in
// progress or finished by then. It returns false, without an instance, when
// ctx ends first.
func (r *Runtime) WaitInstanceAt(ctx context.Context, ip netip.Addr) (Peer, bool) {
	return runtime.Lookup(ctx, &r.launches, func() (Peer, bool) { return r.InstanceAt(ip) })
}

// launching records a launch whose container is about to get an address;
// the returned function (idempotent) ends the record once the address is
// registered or the launch failed.
func (r *Runtime) launching() (settled func()) { return r.launches.Begin() }

// register maps ip to in, unless in's container was already seen to exit.
func (r *Runtime) register(ip netip.Addr, in *instance) {
	r.mu.Lock()
	if !in.exited {
		r.byIP[ip] = in
	}
	r.mu.Unlock()
}

// unregister forgets in (an address may have gone to a newer instance) and
// keeps register from adding it again: its container has exited.
func (r *Runtime) unregister(in *instance) {
	r.mu.Lock()
	in.exited = true
	for ip, v := range r.byIP {
		if v == in {
			delete(r.byIP, ip)
		}
	}
	r.mu.Unlock()
}

// Cleanup force-removes every container labelled with this runtime's owner,
// running or not, and returns how many it removed. Usher calls it when it
// starts, before any instance runs, to clear what a killed Usher left behind.
func (r *Runtime) Cleanup(ctx context.Context) (int, error) {
	r.cleanupVolumeFiles() // secretfiles.go
	list, err := r.c.ContainerList(ctx, client.ContainerListOptions{
		All:     true,
		Filters: r.ownerFilter(),
	})
	if err != nil {
		return 0, fmt.Errorf("docker: listing Usher's containers: %w", err)
	}
	n := 0
	var errs []error
	for _, ctr := range list.Items {
		if ctr.Labels[LabelOwner] != r.cfg.Owner { // never trust a filter alone
			continue
		}
		_, err := r.c.ContainerRemove(ctx, ctr.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
		if cerrdefs.IsConflict(err) {
			// Its removal is already in progress (by its instance's
			// watcher, or another Cleanup): wait for it.
			err = r.waitRemoved(ctx, ctr.ID)
		}
		if err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("docker: removing container %s: %w", shortID(ctr.ID), err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// waitRemoved waits until a container is gone.
func (r *Runtime) waitRemoved(ctx context.Context, cid string) error {
	ctx, cancel := context.WithTimeout(ctx, engineTimeout)
	defer cancel()
	w := r.c.ContainerWait(ctx, cid, client.ContainerWaitOptions{Condition: container.WaitConditionRemoved})
	select {
	case <-w.Result:
		return nil
	case err := <-w.Error:
		return err
	}
}

func (r *Runtime) ownerFilter() client.Filters {
	return make(client.Filters).Add("label", LabelManaged+"=true", LabelOwner+"="+r.cfg.Owner)
}

// Start implements runtime.Runtime.
func (r *Runtime) Start(ctx context.Context, spec runtime.InstanceSpec) (runtime.Instance, error) {
	spec = spec.WithDefaults()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := runtime.ValidateEnv(spec.Env); err != nil {
		return nil, err
	}
	if spec.Image == "" {
		return nil, errors.New("docker: no image given")
	}
	if runtime.IsFileImage(spec.Image) {
		return nil, fmt.Errorf("image %q: the Docker runtime runs container images, not file:// executables", spec.Image)
	}
	res, err := resources(spec)
	if err != nil {
		return nil, err
	}
	if err := r.ensureImage(ctx, spec.Image); err != nil {
		return nil, err
	}
	id, err := newID()
	if err != nil {
		return nil, err
	}
	in, err := r.launch(ctx, spec, id, res)
	if err != nil {
		return nil, err
	}
	if spec.RunToCompletion {
		return in, nil
	}
	if err := in.probe(ctx, spec.StartupTimeout); err != nil {
		return nil, err
	}
	return in, nil
}

// Limits every container gets.
const (
	DefaultMemory = "512Mi" // when the revision sets none, as on Cloud Run
	DefaultPids   = 1024    // processes and threads
)

// resources turns the spec's limits into container resources.
func resources(spec runtime.InstanceSpec) (container.Resources, error) {
	pids := int64(DefaultPids)
	res := container.Resources{PidsLimit: &pids}
	if spec.Memory == "" {
		spec.Memory = DefaultMemory
	}
	if spec.CPU != "" {
		milli, err := runtime.ParseCPU(spec.CPU)
		if err != nil {
			return res, err
		}
		res.NanoCPUs = milli * 1_000_000
	}
	if spec.Memory != "" {
		b, err := runtime.ParseMemory(spec.Memory)
		if err != nil {
			return res, err
		}
		if b < minMemory {
			return res, fmt.Errorf("memory limit %q: the Docker engine needs at least 6Mi", spec.Memory)
		}
		res.Memory = b
		res.MemorySwap = b // no swap beyond the limit, as on Cloud Run
	}
	return res, nil
}

// minMemory is the smallest memory limit the engine accepts.
const minMemory = 6 << 20

// ensureImage pulls ref unless the engine already has it.
func (r *Runtime) ensureImage(ctx context.Context, ref string) error {
	_, err := r.c.ImageInspect(ctx, ref)
	if err == nil {
		return nil
	}
	if !cerrdefs.IsNotFound(err) {
		if ctx.Err() != nil {
			return fmt.Errorf("image %q: %w", ref, ctx.Err())
		}
		return fmt.Errorf("image %q: docker engine at %s: %w", ref, r.c.DaemonHost(), err)
	}
	if r.cfg.NoPull {
		return fmt.Errorf("image %q is not on the Docker engine, and pulling is off: build or load it there first", ref)
	}
	pull, err := r.c.ImagePull(ctx, ref, client.ImagePullOptions{})
	if err == nil {
		err = pull.Wait(ctx)
		pull.Close()
	}
	if err != nil {
		return fmt.Errorf("image %q not found locally and cannot be pulled: %w", ref, err)
	}
	return nil
}

// containerEnv is the contract environment inside a container: PATH and HOME
// are left to the image and the engine unless the revision sets them.
func containerEnv(spec runtime.InstanceSpec) []string {
	set := map[string]bool{}
	for _, e := range spec.Env {
		set[e.Name] = true
	}
	for _, e := range spec.ExtraEnv {
		set[e.Name] = true
	}
	env := runtime.ContractEnv(spec, ContainerPort)
	return slices.DeleteFunc(env, func(kv string) bool {
		name, _, _ := strings.Cut(kv, "=")
		return (name == "PATH" || name == "HOME") && !set[name]
	})
}

var containerPort = network.MustParsePort(fmt.Sprintf("%d/tcp", ContainerPort))

// containerConfigs builds the container of an instance.
// filesDirs maps a read-only volume's index in spec.Volumes to the host
// directory that holds its files (secretfiles.go).
func (r *Runtime) containerConfigs(spec runtime.InstanceSpec, id string, res container.Resources, filesDirs map[int]string) (*container.Config, *container.HostConfig) {
	cfg := &container.Config{
		Image:        spec.Image,
		Env:          containerEnv(spec),
		ExposedPorts: network.PortSet{containerPort: {}},
		AttachStdout: true,
		AttachStderr: true,
		Labels: map[string]string{
			LabelManaged:  "true",
			LabelOwner:    r.cfg.Owner,
			LabelService:  spec.Service,
			LabelRevision: spec.Revision,
			LabelInstance: id,
		},
	}
	// Cloud Run: --command replaces ENTRYPOINT (and then the image's CMD is
	// not used), --args replaces CMD.
	cfg.WorkingDir = spec.WorkingDir // Docker makes it when the image lacks it
	if len(spec.Command) > 0 {
		cfg.Entrypoint = slices.Clone(spec.Command)
		cfg.Cmd = append([]string{}, spec.Args...)
	} else if len(spec.Args) > 0 {
		cfg.Cmd = slices.Clone(spec.Args)
	}
	hc := &container.HostConfig{
		NetworkMode:   container.NetworkMode(r.network),
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled},
		AutoRemove:    false, // Usher removes its containers itself
		Resources:     res,
		// No raw sockets: an instance must not forge its source address
		// (see InstanceAt).
		CapDrop: []string{"NET_RAW"},
	}
	for i, v := range spec.Volumes {
		if v.Files != nil { // secret files: read-only, from memory on the host
			hc.Mounts = append(hc.Mounts, mount.Mount{Type: mount.TypeBind, Source: filesDirs[i], Target: v.Path, ReadOnly: true})
			continue
		}
		// In-memory volumes: a tmpfs each, anyone may write.
		hc.Mounts = append(hc.Mounts, mount.Mount{Type: mount.TypeTmpfs, Target: v.Path,
			TmpfsOptions: &mount.TmpfsOptions{SizeBytes: v.SizeBytes, Mode: 0o1777}})
	}
	if r.hostAlias {
		hc.ExtraHosts = []string{HostAlias + ":host-gateway"}
	}
	if !r.direct {
		hc.PortBindings = network.PortMap{containerPort: {{HostIP: r.publishIP}}}
	}
	return cfg, hc
}

// containerName is a readable, unique container name.
func containerName(revision, id string) string {
	var b strings.Builder
	for _, c := range revision {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
			b.WriteRune(c)
		default:
			b.WriteByte('-')
		}
		if b.Len() >= 60 {
			break
		}
	}
	if b.Len() == 0 {
		return "usher-" + id
	}
	return "usher-" + b.String() + "-" + id
}

func newID() (string, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("instance id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
