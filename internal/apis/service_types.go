// Package apis holds the resources of Usher's admin API in the shapes Cloud Run
// clients already speak: Knative serving.knative.dev/v1 Services and Revisions
// (what gcloud's managed platform sends), plus service accounts. Defaults,
// validation and status lifecycle live beside the types.
//
// It is pure: no I/O. Validation errors name the offending field path.
package apis

// APIVersion and kinds of the Knative serving resources Cloud Run speaks.
const (
	ServingAPIVersion = "serving.knative.dev/v1"
	KindService       = "Service"
	KindRevision      = "Revision"
)

// Annotations and labels with meaning to Usher (Cloud Run's names).
const (
	AnnotationInvokerIAMDisabled = "run.googleapis.com/invoker-iam-disabled"
	// AnnotationIAPEnabled puts the service behind Usher's identity-aware
	// proxy (gcloud's --iap writes "true").
	AnnotationIAPEnabled      = "run.googleapis.com/iap-enabled"
	AnnotationCustomAudiences = "run.googleapis.com/custom-audiences"
	// AnnotationAnonymousRateLimit is Usher's own: the rate limit anonymous
	// callers of a public service are held to (ratelimit.Parse's syntax).
	AnnotationAnonymousRateLimit = "usher.dev/anonymous-rate-limit"
	AnnotationMinScale           = "autoscaling.knative.dev/minScale"
	AnnotationMaxScale           = "autoscaling.knative.dev/maxScale"
	AnnotationIngress            = "run.googleapis.com/ingress"
	AnnotationIngressStatus      = "run.googleapis.com/ingress-status"
	AnnotationURLs               = "run.googleapis.com/urls"
	AnnotationCreator            = "serving.knative.dev/creator"
	AnnotationLastModifier       = "serving.knative.dev/lastModifier"
	LabelService                 = "serving.knative.dev/service"
	LabelConfiguration           = "serving.knative.dev/configuration"
	LabelConfigurationGeneration = "serving.knative.dev/configurationGeneration"
	LabelLocation                = "cloud.googleapis.com/location"
)

// ObjectMeta is Kubernetes object metadata, as Cloud Run's v1 API uses it.
type ObjectMeta struct {
	Name              string            `json:"name,omitempty"`
	Namespace         string            `json:"namespace,omitempty"`
	SelfLink          string            `json:"selfLink,omitempty"`
	UID               string            `json:"uid,omitempty"`
	ResourceVersion   string            `json:"resourceVersion,omitempty"`
	Generation        int64             `json:"generation,omitempty"`
	CreationTimestamp string            `json:"creationTimestamp,omitempty"`
	Labels            map[string]string `json:"labels,omitempty"`
	Annotations       map[string]string `json:"annotations,omitempty"`
}

// Service is a Knative v1 Service.
type Service struct {
	APIVersion string        `json:"apiVersion"`
	Kind       string        `json:"kind"`
	Metadata   ObjectMeta    `json:"metadata"`
	Spec       ServiceSpec   `json:"spec"`
	Status     ServiceStatus `json:"status,omitempty"`
}

// ServiceSpec is what the user asks for.
type ServiceSpec struct {
	Template RevisionTemplate `json:"template"`
	Traffic  []TrafficTarget  `json:"traffic,omitempty"`
}

// RevisionTemplate describes the revisions a service creates.
type RevisionTemplate struct {
	Metadata ObjectMeta   `json:"metadata,omitempty"`
	Spec     RevisionSpec `json:"spec"`
}

// RevisionSpec is one revision's runtime configuration.
type RevisionSpec struct {
	ContainerConcurrency *int64      `json:"containerConcurrency,omitempty"`
	TimeoutSeconds       int64       `json:"timeoutSeconds,omitempty"`
	ServiceAccountName   string      `json:"serviceAccountName,omitempty"`
	Containers           []Container `json:"containers"`
	// Volumes are in-memory (emptyDir with medium Memory) or secrets
	// mounted as files.
	Volumes []Volume `json:"volumes,omitempty"`
}

// Volume is a revision's volume: in memory, or a secret's versions as
// read-only files.
type Volume struct {
	Name     string                `json:"name"`
	EmptyDir *EmptyDirVolumeSource `json:"emptyDir,omitempty"`
	Secret   *SecretVolumeSource   `json:"secret,omitempty"`
}

// SecretVolumeSource mounts versions of a secret of the service's project
// as files (gcloud run deploy --set-secrets=/DIR/FILE=SECRET:VERSION).
// Without Items, the latest version is the file named as the secret, as
// on Cloud Run.
type SecretVolumeSource struct {
	SecretName string      `json:"secretName"`
	Items      []KeyToPath `json:"items,omitempty"`
	// DefaultMode is the files' permission bits (default 0444).
	DefaultMode *int32 `json:"defaultMode,omitempty"`
}

// KeyToPath is one file of a secret volume: version Key ("latest" or a
// number) at Path, a file name in the mount's directory.
type KeyToPath struct {
	Key  string `json:"key"`
	Path string `json:"path"`
	Mode *int32 `json:"mode,omitempty"`
}

// DefaultSecretFileMode is a secret file's mode when none is set.
const DefaultSecretFileMode = 0o444

// SecretFiles are the files a secret volume holds: each version to read,
// the file's name and its mode.
func (v *SecretVolumeSource) SecretFiles() []SecretFile {
	mode := int32(DefaultSecretFileMode)
	if v.DefaultMode != nil {
		mode = *v.DefaultMode
	}
	if len(v.Items) == 0 {
		return []SecretFile{{Version: "latest", Path: v.SecretName, Mode: mode}}
	}
	out := make([]SecretFile, 0, len(v.Items))
	for _, it := range v.Items {
		m := mode
		if it.Mode != nil {
			m = *it.Mode
		}
		out = append(out, SecretFile{Version: it.Key, Path: it.Path, Mode: m})
	}
	return out
}

// SecretFile is one file of a secret volume.
type SecretFile struct {
	Version, Path string
	Mode          int32
}

// EmptyDirVolumeSource is an in-memory volume (gcloud --add-volume
// type=in-memory): a tmpfs per instance, its size bounded by SizeLimit
// (a memory quantity) when set.
type EmptyDirVolumeSource struct {
	Medium    string `json:"medium,omitempty"`
	SizeLimit string `json:"sizeLimit,omitempty"`
}

// MediumMemory is the only emptyDir medium (as on Cloud Run).
const MediumMemory = "Memory"

// VolumeMount mounts a volume in the container.
type VolumeMount struct {
	Name      string `json:"name"`
	MountPath string `json:"mountPath"`
}

// Container is the single container of a revision.
type Container struct {
	Name    string   `json:"name,omitempty"`
	Image   string   `json:"image"`
	Command []string `json:"command,omitempty"`
	Args    []string `json:"args,omitempty"`
	// WorkingDir is the absolute directory the program starts in
	// (default: the image's, or the process runtime's own).
	WorkingDir   string          `json:"workingDir,omitempty"`
	Env          []EnvVar        `json:"env,omitempty"`
	VolumeMounts []VolumeMount   `json:"volumeMounts,omitempty"`
	Ports        []ContainerPort `json:"ports,omitempty"`
	Resources    *Resources      `json:"resources,omitempty"`
	// StartupProbe decides when an instance may take requests: tcpSocket
	// is Usher's own start check (a connection to the serving port);
	// httpGet adds GETs until one answers 2xx or 3xx. LivenessProbe, once
	// started, restarts an instance that fails it failureThreshold times
	// in a row.
	StartupProbe  *Probe `json:"startupProbe,omitempty"`
	LivenessProbe *Probe `json:"livenessProbe,omitempty"`
}

// Probe is a startup or liveness probe: a TCP connection or an HTTP GET to
// the serving port. Unset timings take Kubernetes' defaults (timeout 1s,
// period 10s, failure threshold 3). A tcpSocket startup probe is Usher's
// own start check, whose bound is the runtime's start timeout: its timings
// are shown back but not used; successThreshold is never used (1).
type Probe struct {
	TCPSocket           *TCPSocketAction `json:"tcpSocket,omitempty"`
	HTTPGet             *HTTPGetAction   `json:"httpGet,omitempty"`
	GRPC                *GRPCAction      `json:"grpc,omitempty"`
	InitialDelaySeconds int32            `json:"initialDelaySeconds,omitempty"`
	TimeoutSeconds      int32            `json:"timeoutSeconds,omitempty"`
	PeriodSeconds       int32            `json:"periodSeconds,omitempty"`
	FailureThreshold    int32            `json:"failureThreshold,omitempty"`
	SuccessThreshold    int32            `json:"successThreshold,omitempty"`
}

// HTTPGetAction is a probe's GET: Path (default "/") on the serving port.
type HTTPGetAction struct {
	Path string `json:"path,omitempty"`
	Port int32  `json:"port,omitempty"`
}

// GRPCAction is a probe's gRPC health check (grpc.health.v1.Health/Check)
// of Service ("" for the server as a whole), over h2c on the serving port.
type GRPCAction struct {
	Port    int32  `json:"port,omitempty"`
	Service string `json:"service,omitempty"`
}

// TCPSocketAction is a probe's TCP check.
type TCPSocketAction struct {
	Port int32 `json:"port,omitempty"`
}

// EnvVar is an environment variable: a literal value, or a Secret Manager
// secret's version resolved when each instance starts (ValueFrom).
type EnvVar struct {
	Name      string        `json:"name"`
	Value     string        `json:"value,omitempty"`
	ValueFrom *EnvVarSource `json:"valueFrom,omitempty"`
}

// EnvVarSource is where a variable's value comes from: a secret only.
type EnvVarSource struct {
	SecretKeyRef *SecretKeySelector `json:"secretKeyRef,omitempty"`
}

// SecretKeySelector names a secret of the service's project (Name) and its
// version (Key: a number or "latest", the newest enabled version when an
// instance starts), as Cloud Run's v1 API does.
type SecretKeySelector struct {
	Name string `json:"name"`
	Key  string `json:"key"`
}

// SecretRef returns the secret and version e takes its value from, if any.
func (e EnvVar) SecretRef() (secret, version string, ok bool) {
	if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
		return "", "", false
	}
	return e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key, true
}

// ContainerPort names the port the container listens on.
type ContainerPort struct {
	Name          string `json:"name,omitempty"`
	ContainerPort int32  `json:"containerPort,omitempty"`
}

// Resources are container limits.
type Resources struct {
	Limits map[string]string `json:"limits,omitempty"`
}

// TrafficTarget routes a share of traffic to a revision.
type TrafficTarget struct {
	ConfigurationName string `json:"configurationName,omitempty"`
	RevisionName      string `json:"revisionName,omitempty"`
	LatestRevision    *bool  `json:"latestRevision,omitempty"`
	Percent           int64  `json:"percent,omitempty"`
	Tag               string `json:"tag,omitempty"`
	URL               string `json:"url,omitempty"`
}

// ServiceStatus is what Usher reports back.
type ServiceStatus struct {
	ObservedGeneration        int64           `json:"observedGeneration,omitempty"`
	Conditions                []Condition     `json:"conditions,omitempty"`
	LatestReadyRevisionName   string          `json:"latestReadyRevisionName,omitempty"`
	LatestCreatedRevisionName string          `json:"latestCreatedRevisionName,omitempty"`
	URL                       string          `json:"url,omitempty"`
	Address                   *Addressable    `json:"address,omitempty"`
	Traffic                   []TrafficTarget `json:"traffic,omitempty"`
}

// Addressable carries the service's URL.
type Addressable struct {
	URL string `json:"url,omitempty"`
}

// Condition is a Knative status condition.
type Condition struct {
	Type               string `json:"type"`
	Status             string `json:"status"`
	Reason             string `json:"reason,omitempty"`
	Message            string `json:"message,omitempty"`
	LastTransitionTime string `json:"lastTransitionTime,omitempty"`
	Severity           string `json:"severity,omitempty"`
}

// Revision is a Knative v1 Revision: an immutable snapshot of a service's template.
type Revision struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Metadata   ObjectMeta     `json:"metadata"`
	Spec       RevisionSpec   `json:"spec"`
	Status     RevisionStatus `json:"status,omitempty"`
}

// RevisionStatus reports whether the revision could start.
type RevisionStatus struct {
	ObservedGeneration int64       `json:"observedGeneration,omitempty"`
	Conditions         []Condition `json:"conditions,omitempty"`
	ImageDigest        string      `json:"imageDigest,omitempty"`
}

// List is a Knative list response.
type List[T any] struct {
	APIVersion  string   `json:"apiVersion"`
	Kind        string   `json:"kind"`
	Metadata    ListMeta `json:"metadata"`
	Items       []T      `json:"items"`
	Unreachable []string `json:"unreachable,omitempty"`
}

// ListMeta is Kubernetes list metadata.
type ListMeta struct {
	ResourceVersion string `json:"resourceVersion,omitempty"`
	SelfLink        string `json:"selfLink,omitempty"`
}

// ServiceAccount is an IAM v1 service account.
type ServiceAccount struct {
	Name           string `json:"name"`
	ProjectID      string `json:"projectId"`
	UniqueID       string `json:"uniqueId"`
	Email          string `json:"email"`
	DisplayName    string `json:"displayName,omitempty"`
	Description    string `json:"description,omitempty"`
	Etag           string `json:"etag,omitempty"`
	OAuth2ClientID string `json:"oauth2ClientId,omitempty"`
	Disabled       bool   `json:"disabled,omitempty"`
}

// PortNameH2C is the container port name that makes Cloud Run (and Usher)
// speak HTTP/2 without TLS to the instance (gcloud run deploy --use-http2).
const PortNameH2C = "h2c"

// UsesHTTP2 reports whether instances of the revision want h2c.
func (r *Revision) UsesHTTP2() bool {
	c := r.Spec.Containers
	return len(c) > 0 && len(c[0].Ports) > 0 && c[0].Ports[0].Name == PortNameH2C
}
