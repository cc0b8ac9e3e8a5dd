package apis

// Cloud Run Admin API v2 (run.googleapis.com/v2) resources.
//
// v2 is a view: Usher stores every service as the Knative v1 Service above, so
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
//	ingress                                    INGRESS_TRAFFIC_ALL or unset only (Usher has no private networks)
//	launchStage                                annotation run.googleapis.com/launch-stage (GA: none)
//	invokerIamDisabled                         annotation run.googleapis.com/invoker-iam-disabled
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
//	  env[] {name, value}                      env (valueSource refused: no secrets)
//	  resources.limits                         resources.limits
//	  resources.cpuIdle                        true or unset only
//	  resources.startupCpuBoost                false or unset only
//	  ports[] {name, containerPort}            ports (at most one)
//	  startupProbe                             a tcpSocket probe on the serving port only: Usher's
//	                                           own start check; its timings are ignored
//
// Refused with INVALID_ARGUMENT naming the field when set to anything but
// its empty value: binaryAuthorization, buildConfig, scaling (service-level:
// minInstanceCount, maxInstanceCount, manualInstanceCount, scalingMode other
// than AUTOMATIC), defaultUriDisabled, iapEnabled, sshEnabled,
// multiRegionSettings, functionalType; template.vpcAccess, volumes,
// encryptionKey*, executionEnvironment, nodeSelector, sessionAffinity,
// healthCheckDisabled, gpuZonalRedundancyDisabled, serviceMesh, sandboxes,
// workloadIdentityConfig, ambientNetworking, scaling.cpuUtilization,
// scaling.concurrencyUtilization; containers[].volumeMounts, workingDir,
// livenessProbe, readinessProbe, dependsOn, baseImageUri, buildConfig,
// sourceCode, sandboxLauncher, env[].valueSource. A name v2 does not define
// is refused too. Output-only fields (uid, generation, conditions, uri, …)
// are ignored, since clients send back what they read.
//
// Requests are decoded as Google's front end does: field names in
// lowerCamelCase or snake_case, enums by name or number, int64 as string or
// number.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Type URLs of google.protobuf.Any payloads in v2 operations.
const (
	V2ServiceTypeURL = "type.googleapis.com/google.cloud.run.v2.Service"
)

// Annotations v2 fields are stored in (besides the ones above).
const (
	AnnotationDescription   = "run.googleapis.com/description"
	AnnotationClientName    = "run.googleapis.com/client-name"
	AnnotationClientVersion = "run.googleapis.com/client-version"
	AnnotationLaunchStage   = "run.googleapis.com/launch-stage"
)

// v2 enum values Usher produces or checks.
const (
	V2IngressAll             = "INGRESS_TRAFFIC_ALL"
	V2LaunchStageGA          = "GA"
	V2TrafficLatest          = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
	V2TrafficRevision        = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"
	V2ConditionPending       = "CONDITION_PENDING"
	V2ConditionReconciling   = "CONDITION_RECONCILING"
	V2ConditionFailed        = "CONDITION_FAILED"
	V2ConditionSucceeded     = "CONDITION_SUCCEEDED"
	v2TrafficUnspecified     = "TRAFFIC_TARGET_ALLOCATION_TYPE_UNSPECIFIED"
	v2LaunchStageUnspecified = "LAUNCH_STAGE_UNSPECIFIED"
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
	ClientVersion                 string             `json:"clientVersion,omitempty"`
}

// V2RevisionScaling is google.cloud.run.v2.RevisionScaling.
type V2RevisionScaling struct {
	MinInstanceCount int32 `json:"minInstanceCount,omitempty"`
	MaxInstanceCount int32 `json:"maxInstanceCount,omitempty"`
}

// V2Container is google.cloud.run.v2.Container.
type V2Container struct {
	Name      string                  `json:"name,omitempty"`
	Image     string                  `json:"image,omitempty"`
	Command   []string                `json:"command,omitempty"`
	Args      []string                `json:"args,omitempty"`
	Env       []V2EnvVar              `json:"env,omitempty"`
	Resources *V2ResourceRequirements `json:"resources,omitempty"`
	Ports     []V2ContainerPort       `json:"ports,omitempty"`
}

// V2EnvVar is google.cloud.run.v2.EnvVar with a literal value.
type V2EnvVar struct {
	Name  string `json:"name"`
	Value string `json:"value,omitempty"`
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

// V2Revision is google.cloud.run.v2.Revision (read-only in Usher).
type V2Revision struct {
	Name                          string             `json:"name,omitempty"`
	UID                           string             `json:"uid,omitempty"`
	Generation                    int64              `json:"generation,omitempty,string"`
	Labels                        map[string]string  `json:"labels,omitempty"`
	Annotations                   map[string]string  `json:"annotations,omitempty"`
	CreateTime                    string             `json:"createTime,omitempty"`
	UpdateTime                    string             `json:"updateTime,omitempty"`
	LaunchStage                   string             `json:"launchStage,omitempty"`
	Service                       string             `json:"service,omitempty"`
	Scaling                       *V2RevisionScaling `json:"scaling,omitempty"`
	Timeout                       string             `json:"timeout,omitempty"`
	ServiceAccount                string             `json:"serviceAccount,omitempty"`
	Containers                    []V2Container      `json:"containers,omitempty"`
	MaxInstanceRequestConcurrency int32              `json:"maxInstanceRequestConcurrency,omitempty"`
	Conditions                    []V2Condition      `json:"conditions,omitempty"`
	ObservedGeneration            int64              `json:"observedGeneration,omitempty,string"`
	Reconciling                   bool               `json:"reconciling,omitempty"`
	Etag                          string             `json:"etag,omitempty"`
}

// V2Operation is google.longrunning.Operation. Metadata and Response are
// google.protobuf.Any in JSON: an object whose "@type" names the message.
type V2Operation struct {
	Name     string          `json:"name"`
	Metadata json.RawMessage `json:"metadata,omitempty"`
	Done     bool            `json:"done"`
	Error    *V2Status       `json:"error,omitempty"`
	Response json.RawMessage `json:"response,omitempty"`
}

// V2Status is google.rpc.Status.
type V2Status struct {
	Code    int32  `json:"code"`
	Message string `json:"message,omitempty"`
}

// V2AnyJSON renders v as a google.protobuf.Any of typeURL: v's fields
// beside "@type".
func V2AnyJSON(typeURL string, v any) (json.RawMessage, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	if len(body) < 2 || body[0] != '{' {
		return nil, fmt.Errorf("apis: %T does not encode as a JSON object", v)
	}
	head, err := json.Marshal(map[string]string{"@type": typeURL})
	if err != nil {
		return nil, err
	}
	if string(body) == "{}" {
		return head, nil
	}
	out := append(head[:len(head)-1:len(head)-1], ',')
	return append(out, body[1:]...), nil
}

// V2ServiceName is projects/P/locations/L/services/S.
func V2ServiceName(project, region, name string) string {
	return ServiceResource(project, region, name)
}

// V2RevisionName is projects/P/locations/L/services/S/revisions/R.
func V2RevisionName(project, region, service, revision string) string {
	return ServiceResource(project, region, service) + "/revisions/" + revision
}

// systemPrefixes mark labels and annotations the platform owns. v2 neither
// shows nor accepts them (as on Cloud Run); v2 fields map onto some of them.
var systemPrefixes = []string{"run.googleapis.com/", "cloud.googleapis.com/", "serving.knative.dev/", "autoscaling.knative.dev/", "usher.dev/"}

func isSystemKey(k string) bool {
	for _, p := range systemPrefixes {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}

// userKeys returns m without system keys (nil when none are left).
func userKeys(m map[string]string) map[string]string {
	var out map[string]string
	for k, v := range m {
		if isSystemKey(k) {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k] = v
	}
	return out
}

// serviceAnnotationsOfV2 are the service annotations v2 fields decide; on a
// v2 write they come from the request alone, never from the old object.
var serviceAnnotationsOfV2 = []string{
	AnnotationInvokerIAMDisabled, AnnotationCustomAudiences, AnnotationDescription,
	AnnotationClientName, AnnotationClientVersion, AnnotationLaunchStage,
	AnnotationIngress, AnnotationIngressStatus, AnnotationURLs,
}

// templateAnnotationsOfV2 are the template annotations v2 fields decide.
var templateAnnotationsOfV2 = []string{
	AnnotationMinScale, AnnotationMaxScale, AnnotationClientName, AnnotationClientVersion,
}

// ServiceToV2 renders a stored service as a v2 Service. url is the service's
// URL; the caller sets Etag.
func ServiceToV2(s *Service, url string) *V2Service {
	project, region, name := s.Metadata.Namespace, s.Metadata.Labels[LabelLocation], s.Metadata.Name
	ann := s.Metadata.Annotations
	v := &V2Service{
		Name:               V2ServiceName(project, region, name),
		Description:        ann[AnnotationDescription],
		UID:                s.Metadata.UID,
		Generation:         s.Metadata.Generation,
		Labels:             userKeys(s.Metadata.Labels),
		Annotations:        userKeys(ann),
		CreateTime:         s.Metadata.CreationTimestamp,
		Creator:            ann[AnnotationCreator],
		LastModifier:       ann[AnnotationLastModifier],
		Client:             ann[AnnotationClientName],
		ClientVersion:      ann[AnnotationClientVersion],
		Ingress:            V2IngressAll,
		LaunchStage:        V2LaunchStageGA,
		InvokerIAMDisabled: s.InvokerIAMDisabled(),
		CustomAudiences:    s.CustomAudiences(),
		ObservedGeneration: s.Status.ObservedGeneration,
		Reconciling:        s.Status.ObservedGeneration != s.Metadata.Generation,
	}
	// gcloud writes the annotation too; show only stages clients can parse.
	if ls := strings.ToUpper(ann[AnnotationLaunchStage]); slices.Contains(slices.Collect(maps.Values(enumLaunchStage)), ls) && ls != v2LaunchStageUnspecified {
		v.LaunchStage = ls
	}
	if url != "" {
		v.URI = url
		v.URLs = []string{url}
	}
	tmpl := s.Spec.Template
	spec := tmpl.Spec
	v.Template = &V2RevisionTemplate{
		Revision:       tmpl.Metadata.Name,
		Labels:         userKeys(tmpl.Metadata.Labels),
		Annotations:    userKeys(tmpl.Metadata.Annotations),
		Scaling:        scalingToV2(tmpl.Metadata.Annotations),
		Timeout:        durationToV2(spec.TimeoutSeconds),
		ServiceAccount: spec.ServiceAccountName,
		Containers:     containersToV2(spec.Containers),
		Client:         tmpl.Metadata.Annotations[AnnotationClientName],
		ClientVersion:  tmpl.Metadata.Annotations[AnnotationClientVersion],
	}
	if cc := spec.ContainerConcurrency; cc != nil {
		v.Template.MaxInstanceRequestConcurrency = int32(*cc)
	}
	for _, t := range s.Spec.Traffic {
		v.Traffic = append(v.Traffic, V2TrafficTarget{Type: trafficType(t), Revision: t.RevisionName, Percent: int32(t.Percent), Tag: t.Tag})
	}
	for _, t := range s.Status.Traffic {
		v.TrafficStatuses = append(v.TrafficStatuses, V2TrafficTargetStatus{Type: trafficType(t), Revision: t.RevisionName, Percent: int32(t.Percent), Tag: t.Tag, URI: t.URL})
	}
	if n := s.Status.LatestReadyRevisionName; n != "" {
		v.LatestReadyRevision = V2RevisionName(project, region, name, n)
	}
	if n := s.Status.LatestCreatedRevisionName; n != "" {
		v.LatestCreatedRevision = V2RevisionName(project, region, name, n)
	}
	ready := V2Condition{Type: ConditionReady, State: V2ConditionPending}
	for _, c := range s.Status.Conditions {
		if c.Type == ConditionReady {
			ready = conditionToV2(c)
			continue
		}
		v.Conditions = append(v.Conditions, conditionToV2(c))
	}
	if v.Reconciling {
		// The Ready condition describes the previous generation until the
		// controller observes this one.
		ready.State = V2ConditionReconciling
		ready.Severity, ready.Reason = "", ""
	}
	v.TerminalCondition = &ready
	return v
}

// RevisionToV2 renders a stored revision as a v2 Revision; the caller sets Etag.
func RevisionToV2(r *Revision) *V2Revision {
	project, region := r.Metadata.Namespace, r.Metadata.Labels[LabelLocation]
	service := r.Metadata.Labels[LabelService]
	v := &V2Revision{
		Name:               V2RevisionName(project, region, service, r.Metadata.Name),
		UID:                r.Metadata.UID,
		Generation:         r.Metadata.Generation,
		Labels:             userKeys(r.Metadata.Labels),
		Annotations:        userKeys(r.Metadata.Annotations),
		CreateTime:         r.Metadata.CreationTimestamp,
		UpdateTime:         r.Metadata.CreationTimestamp,
		LaunchStage:        V2LaunchStageGA,
		Service:            V2ServiceName(project, region, service),
		Scaling:            scalingToV2(r.Metadata.Annotations),
		Timeout:            durationToV2(r.Spec.TimeoutSeconds),
		ServiceAccount:     r.Spec.ServiceAccountName,
		Containers:         containersToV2(r.Spec.Containers),
		ObservedGeneration: r.Status.ObservedGeneration,
	}
	if cc := r.Spec.ContainerConcurrency; cc != nil {
		v.MaxInstanceRequestConcurrency = int32(*cc)
	}
	for _, c := range r.Status.Conditions {
		v.Conditions = append(v.Conditions, conditionToV2(c))
	}
	ready := conditionStatus(r.Status.Conditions, ConditionReady)
	v.Reconciling = ready != StatusTrue && ready != StatusFalse
	return v
}

func trafficType(t TrafficTarget) string {
	if t.LatestRevision != nil && *t.LatestRevision {
		return V2TrafficLatest
	}
	return V2TrafficRevision
}

func scalingToV2(ann map[string]string) *V2RevisionScaling {
	minScale, _ := strconv.Atoi(ann[AnnotationMinScale])
	maxScale, _ := strconv.Atoi(ann[AnnotationMaxScale])
	if minScale == 0 && maxScale == 0 {
		return nil
	}
	return &V2RevisionScaling{MinInstanceCount: int32(minScale), MaxInstanceCount: int32(maxScale)}
}

func durationToV2(seconds int64) string {
	if seconds == 0 {
		return ""
	}
	return strconv.FormatInt(seconds, 10) + "s"
}

func containersToV2(cs []Container) []V2Container {
	var out []V2Container
	for _, c := range cs {
		vc := V2Container{Name: c.Name, Image: c.Image, Command: c.Command, Args: c.Args}
		for _, e := range c.Env {
			vc.Env = append(vc.Env, V2EnvVar(e))
		}
		if c.Resources != nil && len(c.Resources.Limits) > 0 {
			vc.Resources = &V2ResourceRequirements{Limits: maps.Clone(c.Resources.Limits)}
		}
		for _, p := range c.Ports {
			vc.Ports = append(vc.Ports, V2ContainerPort(p))
		}
		out = append(out, vc)
	}
	return out
}

// v2Reasons maps Knative condition reasons to v2's CommonReason names; other
// reasons are left out (clients reject enum names they do not know).
var v2Reasons = map[string]string{
	"RevisionFailed":   "REVISION_FAILED",
	"ContainerMissing": "CONTAINER_MISSING",
}

func conditionToV2(c Condition) V2Condition {
	v := V2Condition{Type: c.Type, Message: c.Message, LastTransitionTime: c.LastTransitionTime, Reason: v2Reasons[c.Reason]}
	switch c.Status {
	case StatusTrue:
		v.State = V2ConditionSucceeded
	case StatusFalse:
		v.State = V2ConditionFailed
		v.Severity = "ERROR"
	default:
		v.State = V2ConditionReconciling
	}
	switch strings.ToUpper(c.Severity) {
	case "ERROR", "WARNING", "INFO":
		v.Severity = strings.ToUpper(c.Severity)
	}
	return v
}

// ServiceFromV2 maps a v2 Service (from ParseV2Service) onto the v1 object
// Usher stores, before defaults and server-owned fields (prepareService's
// job). Fields of old that v2 cannot express (v1-only annotations such as
// gcloud's) are carried over by CarryOverV1Only, not here.
func ServiceFromV2(v *V2Service, project, region, name string) (*Service, error) {
	s := &Service{APIVersion: ServingAPIVersion, Kind: KindService}
	s.Metadata.Name = name
	s.Metadata.Namespace = project
	var err error
	if s.Metadata.Labels, err = userMap("service.labels", v.Labels); err != nil {
		return nil, err
	}
	if s.Metadata.Annotations, err = userMap("service.annotations", v.Annotations); err != nil {
		return nil, err
	}
	setAnn := func(m *map[string]string, k, val string) {
		if val == "" {
			return
		}
		if *m == nil {
			*m = map[string]string{}
		}
		(*m)[k] = val
	}
	setAnn(&s.Metadata.Annotations, AnnotationDescription, v.Description)
	setAnn(&s.Metadata.Annotations, AnnotationClientName, v.Client)
	setAnn(&s.Metadata.Annotations, AnnotationClientVersion, v.ClientVersion)
	if ls := v.LaunchStage; ls != "" && ls != V2LaunchStageGA && ls != v2LaunchStageUnspecified {
		setAnn(&s.Metadata.Annotations, AnnotationLaunchStage, ls)
	}
	if v.InvokerIAMDisabled {
		setAnn(&s.Metadata.Annotations, AnnotationInvokerIAMDisabled, "true")
	}
	if len(v.CustomAudiences) > 0 {
		b, err := json.Marshal(v.CustomAudiences)
		if err != nil {
			return nil, err
		}
		setAnn(&s.Metadata.Annotations, AnnotationCustomAudiences, string(b))
	}

	t := v.Template
	if t == nil {
		return nil, fieldErr("service.template", "is required")
	}
	tm := &s.Spec.Template.Metadata
	tm.Name = t.Revision
	if tm.Labels, err = userMap("service.template.labels", t.Labels); err != nil {
		return nil, err
	}
	if tm.Annotations, err = userMap("service.template.annotations", t.Annotations); err != nil {
		return nil, err
	}
	setAnn(&tm.Annotations, AnnotationClientName, t.Client)
	setAnn(&tm.Annotations, AnnotationClientVersion, t.ClientVersion)
	if sc := t.Scaling; sc != nil {
		if sc.MinInstanceCount < 0 {
			return nil, fieldErr("service.template.scaling.minInstanceCount", "%d must not be negative", sc.MinInstanceCount)
		}
		if sc.MaxInstanceCount < 0 {
			return nil, fieldErr("service.template.scaling.maxInstanceCount", "%d must not be negative", sc.MaxInstanceCount)
		}
		if sc.MinInstanceCount > 0 {
			setAnn(&tm.Annotations, AnnotationMinScale, strconv.Itoa(int(sc.MinInstanceCount)))
		}
		if sc.MaxInstanceCount > 0 {
			setAnn(&tm.Annotations, AnnotationMaxScale, strconv.Itoa(int(sc.MaxInstanceCount)))
		}
	}
	spec := &s.Spec.Template.Spec
	if spec.TimeoutSeconds, err = durationFromV2("service.template.timeout", t.Timeout); err != nil {
		return nil, err
	}
	spec.ServiceAccountName = t.ServiceAccount
	if t.MaxInstanceRequestConcurrency != 0 {
		cc := int64(t.MaxInstanceRequestConcurrency)
		spec.ContainerConcurrency = &cc
	}
	if n := len(t.Containers); n != 1 {
		return nil, fieldErr("service.template.containers", "exactly one container is required, got %d (Usher does not run sidecars)", n)
	}
	for i, vc := range t.Containers {
		if strings.TrimSpace(vc.Image) == "" {
			return nil, fieldErr(fmt.Sprintf("service.template.containers[%d].image", i), "is required")
		}
		c := Container{Name: vc.Name, Image: vc.Image, Command: vc.Command, Args: vc.Args}
		for _, e := range vc.Env {
			c.Env = append(c.Env, EnvVar(e))
		}
		if vc.Resources != nil && len(vc.Resources.Limits) > 0 {
			c.Resources = &Resources{Limits: maps.Clone(vc.Resources.Limits)}
		}
		for _, p := range vc.Ports {
			c.Ports = append(c.Ports, ContainerPort(p))
		}
		spec.Containers = append(spec.Containers, c)
	}
	for i, tt := range v.Traffic {
		p := fmt.Sprintf("service.traffic[%d]", i)
		target := TrafficTarget{Percent: int64(tt.Percent), Tag: tt.Tag}
		typ := tt.Type
		if typ == "" || typ == v2TrafficUnspecified {
			typ = V2TrafficLatest
			if tt.Revision != "" {
				typ = V2TrafficRevision
			}
		}
		switch typ {
		case V2TrafficLatest:
			if tt.Revision != "" {
				return nil, fieldErr(p+".revision", "must be empty for %s", V2TrafficLatest)
			}
			latest := true
			target.LatestRevision = &latest
		case V2TrafficRevision:
			if tt.Revision == "" {
				return nil, fieldErr(p+".revision", "is required for %s", V2TrafficRevision)
			}
			target.RevisionName = tt.Revision
		}
		s.Spec.Traffic = append(s.Spec.Traffic, target)
	}
	return s, nil
}

// CarryOverV1Only copies onto s, written through v2, what old held that v2
// cannot express: system labels and annotations (e.g. gcloud's) that no v2
// field decides. Without it a v2 read-modify-write of a gcloud-deployed
// service would change its template, and so roll out a new revision.
func CarryOverV1Only(s, old *Service) {
	carry := func(dst *map[string]string, src map[string]string, decided []string) {
		for k, v := range src {
			if !isSystemKey(k) || slices.Contains(decided, k) {
				continue
			}
			if *dst == nil {
				*dst = map[string]string{}
			}
			if _, set := (*dst)[k]; !set {
				(*dst)[k] = v
			}
		}
	}
	carry(&s.Metadata.Labels, old.Metadata.Labels, nil)
	carry(&s.Metadata.Annotations, old.Metadata.Annotations, serviceAnnotationsOfV2)
	carry(&s.Spec.Template.Metadata.Labels, old.Spec.Template.Metadata.Labels, nil)
	carry(&s.Spec.Template.Metadata.Annotations, old.Spec.Template.Metadata.Annotations, templateAnnotationsOfV2)
}

func userMap(path string, m map[string]string) (map[string]string, error) {
	for k := range m {
		if isSystemKey(k) {
			return nil, fieldErr(path, "key %q uses a system prefix; set the matching v2 field instead", k)
		}
	}
	return maps.Clone(m), nil
}

// durationFromV2 parses a google.protobuf.Duration in JSON ("300s") as whole seconds.
func durationFromV2(path, d string) (int64, error) {
	if d == "" {
		return 0, nil
	}
	num, ok := strings.CutSuffix(d, "s")
	f, err := strconv.ParseFloat(num, 64)
	if !ok || err != nil {
		return 0, fieldErr(path, "%q is not a duration like \"300s\"", d)
	}
	if f != float64(int64(f)) || f <= 0 {
		return 0, fieldErr(path, "%q must be a positive whole number of seconds", d)
	}
	return int64(f), nil
}

// ---- decoding v2 requests ----

// v2Field says how a request field is handled.
type v2Field struct {
	output bool           // output only: ignored in requests
	obj    v2Schema       // a message (or list of messages) with these fields
	enum   map[int]string // enum names by number
	num    bool           // integer: "123" is accepted as well as 123
	// check returns why a value cannot be honoured, or "".
	check func(v any) string
}

type v2Schema map[string]v2Field

var (
	v2In      = v2Field{}
	v2Output  = v2Field{output: true}
	v2Num     = v2Field{num: true}
	v2Message = func(s v2Schema) v2Field { return v2Field{obj: s} }
)

// notImplemented refuses any non-empty value.
func notImplemented(why string) v2Field {
	if why == "" {
		why = "is not supported by Usher"
	}
	return v2Field{check: func(v any) string {
		if isEmptyJSON(v) {
			return ""
		}
		return why
	}}
}

// onlyEnum accepts an enum's unspecified value and the allowed names.
func onlyEnum(names map[int]string, allowed ...string) v2Field {
	return v2Field{enum: names, check: func(v any) string {
		s, _ := v.(string)
		if s == names[0] || slices.Contains(allowed, s) {
			return ""
		}
		if len(allowed) == 0 {
			return fmt.Sprintf("%s is not supported by Usher; leave it unset", s)
		}
		return fmt.Sprintf("%s is not supported by Usher; use %s or leave it unset", s, strings.Join(allowed, " or "))
	}}
}

// onlyBool accepts unset and want.
func onlyBool(want bool, why string) v2Field {
	return v2Field{check: func(v any) string {
		if b, ok := v.(bool); ok && b != want {
			return why
		}
		return ""
	}}
}

var (
	enumIngress = map[int]string{0: "INGRESS_TRAFFIC_UNSPECIFIED", 1: V2IngressAll, 2: "INGRESS_TRAFFIC_INTERNAL_ONLY",
		3: "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER", 4: "INGRESS_TRAFFIC_NONE"}
	enumLaunchStage = map[int]string{0: v2LaunchStageUnspecified, 6: "UNIMPLEMENTED", 7: "PRELAUNCH", 1: "EARLY_ACCESS",
		2: "ALPHA", 3: "BETA", 4: V2LaunchStageGA, 5: "DEPRECATED"}
	enumExecutionEnvironment = map[int]string{0: "EXECUTION_ENVIRONMENT_UNSPECIFIED", 1: "EXECUTION_ENVIRONMENT_GEN1", 2: "EXECUTION_ENVIRONMENT_GEN2"}
	enumTrafficType          = map[int]string{0: v2TrafficUnspecified, 1: V2TrafficLatest, 2: V2TrafficRevision}
	enumScalingMode          = map[int]string{0: "SCALING_MODE_UNSPECIFIED", 1: "AUTOMATIC", 2: "MANUAL"}
	enumFunctionalType       = map[int]string{0: "FUNCTIONAL_TYPE_UNSPECIFIED", 1: "FUNCTIONAL_TYPE_AGENT", 2: "FUNCTIONAL_TYPE_MCP_SERVER"}
)

var v2ContainerSchema = v2Schema{
	"name":    v2In,
	"image":   v2In,
	"command": v2In,
	"args":    v2In,
	"env": v2Message(v2Schema{
		"name":        v2In,
		"value":       v2In,
		"valueSource": notImplemented("is not supported by Usher (no Secret Manager): use value"),
	}),
	"resources": v2Message(v2Schema{
		"limits":          v2In,
		"cpuIdle":         onlyBool(true, "false (CPU always allocated) is not supported by Usher; leave it unset"),
		"startupCpuBoost": onlyBool(false, "is not supported by Usher; leave it unset"),
	}),
	"ports": v2Message(v2Schema{
		"name":          v2In,
		"containerPort": v2Num,
	}),
	"startupProbe":    {check: tcpStartupProbeOnly},
	"livenessProbe":   notImplemented("is not supported by Usher: instances are checked once, by TCP, at start"),
	"readinessProbe":  notImplemented("is not supported by Usher: instances are checked once, by TCP, at start"),
	"volumeMounts":    notImplemented(""),
	"workingDir":      notImplemented(""),
	"dependsOn":       notImplemented(""),
	"baseImageUri":    notImplemented(""),
	"buildConfig":     notImplemented(""),
	"sourceCode":      notImplemented(""),
	"sandboxLauncher": notImplemented(""),
	"buildInfo":       v2Output,
}

var v2TemplateSchema = v2Schema{
	"revision":    v2In,
	"labels":      v2In,
	"annotations": v2In,
	"scaling": v2Message(v2Schema{
		"minInstanceCount":       v2Num,
		"maxInstanceCount":       v2Num,
		"cpuUtilization":         notImplemented(""),
		"concurrencyUtilization": notImplemented(""),
	}),
	"timeout":                       v2In,
	"serviceAccount":                v2In,
	"containers":                    v2Message(v2ContainerSchema),
	"maxInstanceRequestConcurrency": v2Num,
	"client":                        v2In,
	"clientVersion":                 v2In,
	"executionEnvironment":          onlyEnum(enumExecutionEnvironment),
	"sessionAffinity":               onlyBool(false, "is not supported by Usher; leave it unset"),
	"healthCheckDisabled":           onlyBool(false, "is not supported by Usher; leave it unset"),
	"gpuZonalRedundancyDisabled":    onlyBool(false, "is not supported by Usher; leave it unset"),
	"vpcAccess":                     notImplemented("is not supported by Usher: instances reach the network directly"),
	"volumes":                       notImplemented(""),
	"encryptionKey":                 notImplemented(""),
	"encryptionKeyRevocationAction": notImplemented(""),
	"encryptionKeyShutdownDuration": notImplemented(""),
	"nodeSelector":                  notImplemented("is not supported by Usher (no GPUs)"),
	"serviceMesh":                   notImplemented(""),
	"sandboxes":                     notImplemented(""),
	"workloadIdentityConfig":        notImplemented(""),
	"ambientNetworking":             notImplemented(""),
}

var v2ServiceSchema = v2Schema{
	"name":               v2In,
	"description":        v2In,
	"labels":             v2In,
	"annotations":        v2In,
	"client":             v2In,
	"clientVersion":      v2In,
	"ingress":            onlyEnum(enumIngress, V2IngressAll),
	"launchStage":        {enum: enumLaunchStage},
	"template":           v2Message(v2TemplateSchema),
	"traffic":            v2Message(v2Schema{"type": {enum: enumTrafficType}, "revision": v2In, "percent": v2Num, "tag": v2In}),
	"invokerIamDisabled": v2In,
	"customAudiences":    v2In,
	"etag":               v2In,
	"scaling": v2Message(v2Schema{
		"minInstanceCount":    notImplemented("is not supported by Usher: set template.scaling.minInstanceCount"),
		"maxInstanceCount":    notImplemented("is not supported by Usher: set template.scaling.maxInstanceCount"),
		"manualInstanceCount": notImplemented(""),
		"scalingMode":         onlyEnum(enumScalingMode, "AUTOMATIC"),
	}),
	"binaryAuthorization":    notImplemented(""),
	"buildConfig":            notImplemented(""),
	"defaultUriDisabled":     onlyBool(false, "is not supported by Usher; leave it unset"),
	"iapEnabled":             onlyBool(false, "is not supported by Usher; leave it unset"),
	"sshEnabled":             onlyBool(false, "is not supported by Usher; leave it unset"),
	"multiRegionSettings":    notImplemented(""),
	"functionalType":         onlyEnum(enumFunctionalType),
	"uid":                    v2Output,
	"generation":             v2Output,
	"createTime":             v2Output,
	"updateTime":             v2Output,
	"deleteTime":             v2Output,
	"expireTime":             v2Output,
	"creator":                v2Output,
	"lastModifier":           v2Output,
	"urls":                   v2Output,
	"uri":                    v2Output,
	"observedGeneration":     v2Output,
	"terminalCondition":      v2Output,
	"conditions":             v2Output,
	"latestReadyRevision":    v2Output,
	"latestCreatedRevision":  v2Output,
	"trafficStatuses":        v2Output,
	"satisfiesPzs":           v2Output,
	"threatDetectionEnabled": v2Output,
	"reconciling":            v2Output,
}

// tcpStartupProbeOnly accepts the startup check Usher always does: TCP on
// the serving port. Its timings are not honoured.
func tcpStartupProbeOnly(v any) string {
	m, ok := v.(map[string]any)
	if !ok || isEmptyJSON(v) {
		return ""
	}
	const why = "is supported by Usher only as a tcpSocket probe on the serving port"
	for k, val := range m {
		switch lowerCamel(k) {
		case "tcpSocket":
			sock, ok := val.(map[string]any)
			if !ok {
				return why
			}
			for sk := range sock {
				if lowerCamel(sk) != "port" {
					return why
				}
			}
		case "initialDelaySeconds", "timeoutSeconds", "periodSeconds", "failureThreshold":
		default:
			if !isEmptyJSON(val) {
				return why
			}
		}
	}
	return ""
}

func isEmptyJSON(v any) bool {
	switch t := v.(type) {
	case nil:
		return true
	case bool:
		return !t
	case string:
		return t == "" || strings.HasSuffix(t, "_UNSPECIFIED")
	case json.Number:
		f, err := t.Float64()
		return err == nil && f == 0
	case float64:
		return t == 0
	case []any:
		return len(t) == 0
	case map[string]any:
		for _, val := range t {
			if !isEmptyJSON(val) {
				return false
			}
		}
		return true
	}
	return false
}

// lowerCamel turns a proto field name (snake_case) into its JSON name.
func lowerCamel(s string) string {
	if !strings.Contains(s, "_") {
		return s
	}
	var b strings.Builder
	up := false
	for _, r := range s {
		switch {
		case r == '_':
			up = true
		case up:
			b.WriteString(strings.ToUpper(string(r)))
			up = false
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// cleanV2 checks a decoded request object against sch in place: it renames
// snake_case keys, drops output-only fields and nulls, turns enum numbers into
// names and numeric strings into numbers, and refuses unknown and
// unsupported fields, naming them by path.
func cleanV2(path string, obj map[string]any, sch v2Schema) error {
	for _, key := range slices.Sorted(maps.Keys(obj)) {
		v := obj[key]
		name := lowerCamel(key)
		f, ok := sch[name]
		if !ok {
			return fmt.Errorf("Invalid JSON payload received. Unknown name %q at '%s': Cannot find field.", key, path)
		}
		if name != key {
			delete(obj, key)
		}
		p := path + "." + name
		if f.output || v == nil {
			delete(obj, name)
			continue
		}
		if f.enum != nil {
			var err error
			if v, err = enumName(p, v, f.enum); err != nil {
				return err
			}
		}
		if f.num {
			if s, ok := v.(string); ok {
				if _, err := strconv.ParseInt(s, 10, 64); err != nil {
					return fieldErr(p, "%q is not an integer", s)
				}
				v = json.Number(s)
			}
		}
		if f.check != nil {
			if why := f.check(v); why != "" {
				return fieldErr(p, "%s", why)
			}
		}
		if f.obj != nil {
			switch t := v.(type) {
			case map[string]any:
				if err := cleanV2(p, t, f.obj); err != nil {
					return err
				}
			case []any:
				for i, e := range t {
					m, ok := e.(map[string]any)
					if !ok {
						return fieldErr(fmt.Sprintf("%s[%d]", p, i), "must be an object")
					}
					if err := cleanV2(fmt.Sprintf("%s[%d]", p, i), m, f.obj); err != nil {
						return err
					}
				}
			default:
				return fieldErr(p, "must be an object or a list of objects")
			}
		}
		obj[name] = v
	}
	return nil
}

func enumName(path string, v any, names map[int]string) (string, error) {
	switch t := v.(type) {
	case string:
		for _, n := range names {
			if n == t {
				return t, nil
			}
		}
		if _, err := strconv.Atoi(t); err != nil {
			return "", fieldErr(path, "invalid value %q", t)
		}
		v = json.Number(t)
	}
	if n, ok := v.(json.Number); ok {
		i, err := strconv.Atoi(n.String())
		if name, known := names[i]; err == nil && known {
			return name, nil
		}
	}
	return "", fieldErr(path, "invalid value %v", v)
}

func decodeJSONObject(b []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("Invalid JSON payload received. %v", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("Invalid JSON payload received. Unexpected data after the object")
	}
	if m == nil {
		m = map[string]any{}
	}
	return m, nil
}

// ParseV2Service decodes a v2 Service request body (see the table above).
// With current and an update mask (comma-separated field paths, "*" for all),
// only the masked fields are taken from the body and the rest from current;
// without, the body replaces the whole service. The result's Etag is the
// body's.
func ParseV2Service(body []byte, current *V2Service, updateMask string) (*V2Service, error) {
	req, err := decodeJSONObject(body)
	if err != nil {
		return nil, err
	}
	if err := cleanV2("service", req, v2ServiceSchema); err != nil {
		return nil, err
	}
	etag, _ := req["etag"].(string)
	merged := req
	if current != nil && strings.TrimSpace(updateMask) != "" && strings.TrimSpace(updateMask) != "*" {
		cur := *current
		cur.Etag = ""
		b, err := json.Marshal(&cur)
		if err != nil {
			return nil, err
		}
		if merged, err = decodeJSONObject(b); err != nil {
			return nil, err
		}
		if err := cleanV2("service", merged, v2ServiceSchema); err != nil {
			return nil, err
		}
		for _, p := range strings.Split(updateMask, ",") {
			if err := applyMaskPath(merged, req, strings.TrimSpace(p)); err != nil {
				return nil, err
			}
		}
	}
	b, err := json.Marshal(merged)
	if err != nil {
		return nil, err
	}
	var v V2Service
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("Invalid JSON payload received. %v", err)
	}
	v.Etag = etag
	return &v, nil
}

// applyMaskPath copies the field at path (e.g. "template.scaling") from src
// to dst, removing it from dst when src does not set it.
func applyMaskPath(dst, src map[string]any, path string) error {
	if path == "" {
		return nil
	}
	segs := strings.Split(path, ".")
	sch := v2ServiceSchema
	for i, seg := range segs {
		segs[i] = lowerCamel(seg)
		f, ok := sch[segs[i]]
		if !ok || f.output {
			return fieldErr("update_mask", "%q is not a field of Service that can be updated", path)
		}
		if i < len(segs)-1 {
			if f.obj == nil || segs[i] == "containers" || segs[i] == "traffic" || segs[i] == "env" || segs[i] == "ports" {
				return fieldErr("update_mask", "%q: %s cannot be updated in part", path, segs[i])
			}
			sch = f.obj
		}
	}
	last := segs[len(segs)-1]
	from, to := src, dst
	for _, seg := range segs[:len(segs)-1] {
		next, _ := from[seg].(map[string]any)
		from = next
		nextTo, ok := to[seg].(map[string]any)
		if !ok {
			nextTo = map[string]any{}
			to[seg] = nextTo
		}
		to = nextTo
	}
	if v, ok := from[last]; ok {
		to[last] = v
	} else {
		delete(to, last)
	}
	return nil
}
