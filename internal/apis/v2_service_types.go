package apis

// Cloud Run Admin API v2 (run.googleapis.com/v2) resources.
//
// v2 is a view: Usher stores every service as the Knative v1 Service (service_types.go), so
// the controller, the gateway and v1 clients see one object whatever API wrote
// it. ServiceToV2 renders a stored service; ParseV2Service and ServiceFromV2
// turn a v2 request into the v1 object to store.
//
// What a v2 request may carry (field paths relative to the Service):
//
//	field                                      v1 storage / handling
//	name, description                          metadata.name, annotation run.googleapis.com/description
//	labels, annotations                        metadata.labels/annotations (system prefixes refused)
//	client, clientVersion                      annotations run.googleapis.com/client-name, client-version
//	ingress                                    annotation run.googleapis.com/ingress: INGRESS_TRAFFIC_ALL (all),
//	                                           INGRESS_TRAFFIC_INTERNAL_ONLY (internal),
//	                                           INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER
//	                                           (internal-and-cloud-load-balancing)
//	defaultUriDisabled                         annotation run.googleapis.com/default-url-disabled
//	launchStage                                annotation run.googleapis.com/launch-stage (GA: none)
//	invokerIamDisabled                         annotation run.googleapis.com/invoker-iam-disabled
//	iapEnabled                                 annotation run.googleapis.com/iap-enabled
//	customAudiences                            annotation run.googleapis.com/custom-audiences (JSON array)
//	traffic[] {type, revision, percent, tag}   spec.traffic
//	etag                                       compare-and-swap on update
//	template.revision                          spec.template.metadata.name
//	template.labels, template.annotations      spec.template.metadata.labels/annotations
//	template.scaling.{min,max}InstanceCount    template annotations autoscaling.knative.dev/minScale, maxScale
//	template.timeout ("300s", whole seconds)   timeoutSeconds
//	template.serviceAccount                    serviceAccountName
//	template.maxInstanceRequestConcurrency     containerConcurrency
//	template.client, template.clientVersion    template annotations
//	template.containers[] (exactly one):
//	  name, image, command, args               the same
//	  env[] {name, value}                      env
//	  env[].valueSource.secretKeyRef           env[].valueFrom.secretKeyRef {name, key}
//	    {secret, version}                      (a secret of the project; version defaults to latest)
//	  resources.limits                         resources.limits
//	  resources.cpuIdle                        true or unset only
//	  resources.startupCpuBoost                false or unset only
//	  ports[] {name, containerPort}            ports (at most one)
//	  workingDir                               workingDir (an absolute path)
//	  volumeMounts[] {name, mountPath}         volumeMounts
//	template.volumes[] {name, emptyDir}        volumes: emptyDir (medium MEMORY or unset: in memory;
//	                                           sizeLimit) only
//	  startupProbe, livenessProbe               startupProbe, livenessProbe: tcpSocket, httpGet or grpc
//	                                           (no httpHeaders) on the serving port
//
// Refused with INVALID_ARGUMENT naming the field when set to anything but
// its empty value: binaryAuthorization, buildConfig, scaling (service-level:
// minInstanceCount, maxInstanceCount, manualInstanceCount, scalingMode other
// than AUTOMATIC), sshEnabled,
// multiRegionSettings, functionalType; template.vpcAccess, volumes,
// encryptionKey*, executionEnvironment, nodeSelector, sessionAffinity,
// healthCheckDisabled, gpuZonalRedundancyDisabled, serviceMesh, sandboxes,
// workloadIdentityConfig, ambientNetworking, scaling.cpuUtilization,
// scaling.concurrencyUtilization, volumes other than emptyDir; containers[]
// readinessProbe, dependsOn, baseImageUri, buildConfig,
// sourceCode, sandboxLauncher, env[].valueSource. A name v2 does not define
// is refused too. Output-only fields (uid, generation, conditions, uri, …)
// are ignored, since clients send back what they read.
//
// Requests are decoded as Google's front end does: field names in
// lowerCamelCase or snake_case, enums by name or number, int64 as string or
// number.

// Type URLs of google.protobuf.Any payloads in v2 operations.
const (
	V2ServiceTypeURL = "type.googleapis.com/google.cloud.run.v2.Service"
)

// Annotations v2 fields are stored in (besides the v1 ones in service_types.go).
const (
	AnnotationDescription   = "run.googleapis.com/description"
	AnnotationClientName    = "run.googleapis.com/client-name"
	AnnotationClientVersion = "run.googleapis.com/client-version"
	AnnotationLaunchStage   = "run.googleapis.com/launch-stage"
)

// v2 enum values Usher produces or checks.
const (
	V2IngressAll                  = "INGRESS_TRAFFIC_ALL"
	V2IngressInternalOnly         = "INGRESS_TRAFFIC_INTERNAL_ONLY"
	V2IngressInternalLoadBalancer = "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
	V2LaunchStageGA               = "GA"
	V2TrafficLatest               = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
	V2TrafficRevision             = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"
	V2ConditionPending            = "CONDITION_PENDING"
	V2ConditionReconciling        = "CONDITION_RECONCILING"
	V2ConditionFailed             = "CONDITION_FAILED"
	V2ConditionSucceeded          = "CONDITION_SUCCEEDED"
	v2TrafficUnspecified          = "TRAFFIC_TARGET_ALLOCATION_TYPE_UNSPECIFIED"
	v2LaunchStageUnspecified      = "LAUNCH_STAGE_UNSPECIFIED"
)

// V2Service is google.cloud.run.v2.Service.
type V2Service struct {
	Name                  string                  `json:"name,omitempty"`
	Description           string                  `json:"description,omitempty"`
	UID                   string                  `json:"uid,omitempty"`
	Generation            int64                   `json:"generation,omitempty,string"`
	Labels                map[string]string       `json:"labels,omitempty"`
	Annotations           map[string]string       `json:"annotations,omitempty"`
	CreateTime            string                  `json:"createTime,omitempty"`
	UpdateTime            string                  `json:"updateTime,omitempty"`
	DeleteTime            string                  `json:"deleteTime,omitempty"`
	Creator               string                  `json:"creator,omitempty"`
	LastModifier          string                  `json:"lastModifier,omitempty"`
	Client                string                  `json:"client,omitempty"`
	ClientVersion         string                  `json:"clientVersion,omitempty"`
	Ingress               string                  `json:"ingress,omitempty"`
	LaunchStage           string                  `json:"launchStage,omitempty"`
	Template              *V2RevisionTemplate     `json:"template,omitempty"`
	Traffic               []V2TrafficTarget       `json:"traffic,omitempty"`
	InvokerIAMDisabled    bool                    `json:"invokerIamDisabled,omitempty"`
	IAPEnabled            bool                    `json:"iapEnabled,omitempty"`
	DefaultURIDisabled    bool                    `json:"defaultUriDisabled,omitempty"`
	CustomAudiences       []string                `json:"customAudiences,omitempty"`
	ObservedGeneration    int64                   `json:"observedGeneration,omitempty,string"`
	TerminalCondition     *V2Condition            `json:"terminalCondition,omitempty"`
	Conditions            []V2Condition           `json:"conditions,omitempty"`
	LatestReadyRevision   string                  `json:"latestReadyRevision,omitempty"`
	LatestCreatedRevision string                  `json:"latestCreatedRevision,omitempty"`
	TrafficStatuses       []V2TrafficTargetStatus `json:"trafficStatuses,omitempty"`
	URI                   string                  `json:"uri,omitempty"`
	URLs                  []string                `json:"urls,omitempty"`
	Reconciling           bool                    `json:"reconciling,omitempty"`
	Etag                  string                  `json:"etag,omitempty"`
}

// V2RevisionTemplate is google.cloud.run.v2.RevisionTemplate.
type V2RevisionTemplate struct {
	Revision                      string             `json:"revision,omitempty"`
	Labels                        map[string]string  `json:"labels,omitempty"`
	Annotations                   map[string]string  `json:"annotations,omitempty"`
	Scaling                       *V2RevisionScaling `json:"scaling,omitempty"`
	Timeout                       string             `json:"timeout,omitempty"`
	ServiceAccount                string             `json:"serviceAccount,omitempty"`
	Containers                    []V2Container      `json:"containers,omitempty"`
	MaxInstanceRequestConcurrency int32              `json:"maxInstanceRequestConcurrency,omitempty"`
	Client                        string             `json:"client,omitempty"`
	Volumes                       []V2Volume         `json:"volumes,omitempty"`
	ClientVersion                 string             `json:"clientVersion,omitempty"`
}

// V2RevisionScaling is google.cloud.run.v2.RevisionScaling.
type V2RevisionScaling struct {
	MinInstanceCount int32 `json:"minInstanceCount,omitempty"`
	MaxInstanceCount int32 `json:"maxInstanceCount,omitempty"`
}

// V2Container is google.cloud.run.v2.Container.
type V2Container struct {
	Name          string                  `json:"name,omitempty"`
	Image         string                  `json:"image,omitempty"`
	Command       []string                `json:"command,omitempty"`
	Args          []string                `json:"args,omitempty"`
	WorkingDir    string                  `json:"workingDir,omitempty"`
	VolumeMounts  []V2VolumeMount         `json:"volumeMounts,omitempty"`
	StartupProbe  *V2Probe                `json:"startupProbe,omitempty"`
	LivenessProbe *V2Probe                `json:"livenessProbe,omitempty"`
	Env           []V2EnvVar              `json:"env,omitempty"`
	Resources     *V2ResourceRequirements `json:"resources,omitempty"`
	Ports         []V2ContainerPort       `json:"ports,omitempty"`
}

// V2Volume is google.cloud.run.v2.Volume: in memory (emptyDir) or a
// secret's versions as files.
type V2Volume struct {
	Name     string          `json:"name"`
	EmptyDir *V2EmptyDir     `json:"emptyDir,omitempty"`
	Secret   *V2SecretVolume `json:"secret,omitempty"`
}

// V2SecretVolume is google.cloud.run.v2.SecretVolumeSource (a mode of 0 is
// unset).
type V2SecretVolume struct {
	Secret      string            `json:"secret"`
	Items       []V2VersionToPath `json:"items,omitempty"`
	DefaultMode int32             `json:"defaultMode,omitempty"`
}

// V2VersionToPath is google.cloud.run.v2.VersionToPath.
type V2VersionToPath struct {
	Path    string `json:"path"`
	Version string `json:"version,omitempty"`
	Mode    int32  `json:"mode,omitempty"`
}

// V2EmptyDir is google.cloud.run.v2.EmptyDirVolumeSource.
type V2EmptyDir struct {
	Medium    string `json:"medium,omitempty"`
	SizeLimit string `json:"sizeLimit,omitempty"`
}

// V2MediumMemory is EmptyDirVolumeSource.Medium MEMORY.
const V2MediumMemory = "MEMORY"

// V2VolumeMount is google.cloud.run.v2.VolumeMount.
type V2VolumeMount struct {
	Name      string `json:"name"`
	MountPath string `json:"mountPath"`
}

// V2Probe is google.cloud.run.v2.Probe (tcpSocket, httpGet or grpc).
type V2Probe struct {
	InitialDelaySeconds int32              `json:"initialDelaySeconds,omitempty"`
	TimeoutSeconds      int32              `json:"timeoutSeconds,omitempty"`
	PeriodSeconds       int32              `json:"periodSeconds,omitempty"`
	FailureThreshold    int32              `json:"failureThreshold,omitempty"`
	HTTPGet             *V2HTTPGetAction   `json:"httpGet,omitempty"`
	TCPSocket           *V2TCPSocketAction `json:"tcpSocket,omitempty"`
	GRPC                *V2GRPCAction      `json:"grpc,omitempty"`
}

// V2GRPCAction is google.cloud.run.v2.GRPCAction.
type V2GRPCAction struct {
	Port    int32  `json:"port,omitempty"`
	Service string `json:"service,omitempty"`
}

// V2HTTPGetAction is google.cloud.run.v2.HTTPGetAction.
type V2HTTPGetAction struct {
	Path string `json:"path,omitempty"`
	Port int32  `json:"port,omitempty"`
}

// V2TCPSocketAction is google.cloud.run.v2.TCPSocketAction.
type V2TCPSocketAction struct {
	Port int32 `json:"port,omitempty"`
}

// V2EnvVar is google.cloud.run.v2.EnvVar with a literal value.
type V2EnvVar struct {
	Name        string          `json:"name"`
	Value       string          `json:"value,omitempty"`
	ValueSource *V2EnvVarSource `json:"valueSource,omitempty"`
}

// V2EnvVarSource is google.cloud.run.v2.EnvVarSource.
type V2EnvVarSource struct {
	SecretKeyRef *V2SecretKeySelector `json:"secretKeyRef,omitempty"`
}

// V2SecretKeySelector is google.cloud.run.v2.SecretKeySelector.
type V2SecretKeySelector struct {
	Secret  string `json:"secret"`
	Version string `json:"version,omitempty"`
}

// v1 is e in the v1 shape (a secret's version defaults to latest, as v2's does).
func (e V2EnvVar) v1() EnvVar {
	out := EnvVar{Name: e.Name, Value: e.Value}
	if e.ValueSource != nil && e.ValueSource.SecretKeyRef != nil {
		ref := e.ValueSource.SecretKeyRef
		version := ref.Version
		if version == "" {
			version = "latest"
		}
		out.ValueFrom = &EnvVarSource{SecretKeyRef: &SecretKeySelector{Name: ref.Secret, Key: version}}
	} else if e.ValueSource != nil {
		out.ValueFrom = &EnvVarSource{} // refused by validation: no source
	}
	return out
}

// v2Env is e in the v2 shape.
func v2Env(e EnvVar) V2EnvVar {
	out := V2EnvVar{Name: e.Name, Value: e.Value}
	if secret, version, ok := e.SecretRef(); ok {
		out.ValueSource = &V2EnvVarSource{SecretKeyRef: &V2SecretKeySelector{Secret: secret, Version: version}}
	}
	return out
}

// V2ResourceRequirements is google.cloud.run.v2.ResourceRequirements.
type V2ResourceRequirements struct {
	Limits map[string]string `json:"limits,omitempty"`
}

// V2ContainerPort is google.cloud.run.v2.ContainerPort.
type V2ContainerPort struct {
	Name          string `json:"name,omitempty"`
	ContainerPort int32  `json:"containerPort,omitempty"`
}

// V2TrafficTarget is google.cloud.run.v2.TrafficTarget.
type V2TrafficTarget struct {
	Type     string `json:"type,omitempty"`
	Revision string `json:"revision,omitempty"`
	Percent  int32  `json:"percent,omitempty"`
	Tag      string `json:"tag,omitempty"`
}

// V2TrafficTargetStatus is google.cloud.run.v2.TrafficTargetStatus.
type V2TrafficTargetStatus struct {
	Type     string `json:"type,omitempty"`
	Revision string `json:"revision,omitempty"`
	Percent  int32  `json:"percent,omitempty"`
	Tag      string `json:"tag,omitempty"`
	URI      string `json:"uri,omitempty"`
}

// V2Condition is google.cloud.run.v2.Condition.
type V2Condition struct {
	Type               string `json:"type,omitempty"`
	State              string `json:"state,omitempty"`
	Message            string `json:"message,omitempty"`
	LastTransitionTime string `json:"lastTransitionTime,omitempty"`
	Severity           string `json:"severity,omitempty"`
	Reason             string `json:"reason,omitempty"`
}

// V2ServiceName is projects/P/locations/L/services/S.
func V2ServiceName(project, region, name string) string {
	return ServiceResource(project, region, name)
}
