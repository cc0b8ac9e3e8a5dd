package apis

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

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
	AnnotationInvokerIAMDisabled, AnnotationIAPEnabled, AnnotationCustomAudiences, AnnotationDescription,
	AnnotationClientName, AnnotationClientVersion, AnnotationLaunchStage,
	AnnotationIngress, AnnotationIngressStatus, AnnotationURLs, AnnotationDefaultURLDisabled,
}

// ingressToV2 maps the v1 annotation's values to v2's enum and back.
var ingressToV2 = map[string]string{
	IngressAll:           V2IngressAll,
	IngressInternal:      V2IngressInternalOnly,
	IngressInternalAndLB: V2IngressInternalLoadBalancer,
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
		Ingress:            ingressToV2[s.Ingress()],
		DefaultURIDisabled: s.DefaultURLDisabled(),
		LaunchStage:        V2LaunchStageGA,
		InvokerIAMDisabled: s.InvokerIAMDisabled(),
		IAPEnabled:         s.IAPEnabled(),
		CustomAudiences:    s.CustomAudiences(),
		ObservedGeneration: s.Status.ObservedGeneration,
		Reconciling:        s.Status.ObservedGeneration != s.Metadata.Generation,
	}
	// gcloud writes the annotation too; show only stages clients can parse.
	if ls := strings.ToUpper(ann[AnnotationLaunchStage]); slices.Contains(slices.Collect(maps.Values(enumLaunchStage)), ls) && ls != v2LaunchStageUnspecified {
		v.LaunchStage = ls
	}
	if url != "" && !s.DefaultURLDisabled() {
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
		Volumes:        volumesToV2(spec.Volumes),
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
		st := V2TrafficTargetStatus{Type: trafficType(t), Revision: t.RevisionName, Percent: int32(t.Percent), Tag: t.Tag, URI: t.URL}
		if s.DefaultURLDisabled() {
			st.URI = "" // no run URL answers, tags' included
		}
		v.TrafficStatuses = append(v.TrafficStatuses, st)
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
		Volumes:            volumesToV2(r.Spec.Volumes),
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

func probeToV2(p *Probe) *V2Probe {
	if p == nil {
		return nil
	}
	v := &V2Probe{InitialDelaySeconds: p.InitialDelaySeconds, TimeoutSeconds: p.TimeoutSeconds, PeriodSeconds: p.PeriodSeconds, FailureThreshold: p.FailureThreshold}
	if p.HTTPGet != nil {
		v.HTTPGet = &V2HTTPGetAction{Path: p.HTTPGet.Path, Port: p.HTTPGet.Port}
	}
	if p.TCPSocket != nil {
		v.TCPSocket = &V2TCPSocketAction{Port: p.TCPSocket.Port}
	}
	if p.GRPC != nil {
		v.GRPC = &V2GRPCAction{Port: p.GRPC.Port, Service: p.GRPC.Service}
	}
	return v
}

func probeFromV2(v *V2Probe) *Probe {
	if v == nil {
		return nil
	}
	p := &Probe{InitialDelaySeconds: v.InitialDelaySeconds, TimeoutSeconds: v.TimeoutSeconds, PeriodSeconds: v.PeriodSeconds, FailureThreshold: v.FailureThreshold}
	if v.HTTPGet != nil {
		p.HTTPGet = &HTTPGetAction{Path: v.HTTPGet.Path, Port: v.HTTPGet.Port}
	}
	if v.TCPSocket != nil {
		p.TCPSocket = &TCPSocketAction{Port: v.TCPSocket.Port}
	}
	if v.GRPC != nil {
		p.GRPC = &GRPCAction{Port: v.GRPC.Port, Service: v.GRPC.Service}
	}
	return p
}

func volumesToV2(vs []Volume) []V2Volume {
	var out []V2Volume
	for _, v := range vs {
		vv := V2Volume{Name: v.Name}
		if v.EmptyDir != nil {
			vv.EmptyDir = &V2EmptyDir{Medium: V2MediumMemory, SizeLimit: v.EmptyDir.SizeLimit}
		}
		if s := v.Secret; s != nil {
			vs := &V2SecretVolume{Secret: s.SecretName}
			if s.DefaultMode != nil {
				vs.DefaultMode = *s.DefaultMode
			}
			for _, it := range s.Items {
				vi := V2VersionToPath{Path: it.Path, Version: it.Key}
				if it.Mode != nil {
					vi.Mode = *it.Mode
				}
				vs.Items = append(vs.Items, vi)
			}
			vv.Secret = vs
		}
		out = append(out, vv)
	}
	return out
}

func containersToV2(cs []Container) []V2Container {
	var out []V2Container
	for _, c := range cs {
		vc := V2Container{Name: c.Name, Image: c.Image, Command: c.Command, Args: c.Args, WorkingDir: c.WorkingDir}
		for _, m := range c.VolumeMounts {
			vc.VolumeMounts = append(vc.VolumeMounts, V2VolumeMount(m))
		}
		vc.StartupProbe, vc.LivenessProbe = probeToV2(c.StartupProbe), probeToV2(c.LivenessProbe)
		for _, e := range c.Env {
			vc.Env = append(vc.Env, v2Env(e))
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
	if v.IAPEnabled {
		setAnn(&s.Metadata.Annotations, AnnotationIAPEnabled, "true")
	}
	for v1, v2 := range ingressToV2 {
		if v.Ingress == v2 && v1 != IngressAll {
			setAnn(&s.Metadata.Annotations, AnnotationIngress, v1)
		}
	}
	if v.DefaultURIDisabled {
		setAnn(&s.Metadata.Annotations, AnnotationDefaultURLDisabled, "true")
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
		c := Container{Name: vc.Name, Image: vc.Image, Command: vc.Command, Args: vc.Args, WorkingDir: vc.WorkingDir}
		for _, m := range vc.VolumeMounts {
			c.VolumeMounts = append(c.VolumeMounts, VolumeMount(m))
		}
		c.StartupProbe, c.LivenessProbe = probeFromV2(vc.StartupProbe), probeFromV2(vc.LivenessProbe)
		for _, e := range vc.Env {
			c.Env = append(c.Env, e.v1())
		}
		if vc.Resources != nil && len(vc.Resources.Limits) > 0 {
			c.Resources = &Resources{Limits: maps.Clone(vc.Resources.Limits)}
		}
		for _, p := range vc.Ports {
			c.Ports = append(c.Ports, ContainerPort(p))
		}
		spec.Containers = append(spec.Containers, c)
	}
	for i, vv := range t.Volumes {
		if vv.Secret != nil && vv.EmptyDir == nil {
			spec.Volumes = append(spec.Volumes, Volume{Name: vv.Name, Secret: vv.Secret.v1()})
			continue
		}
		if vv.EmptyDir == nil || vv.Secret != nil {
			return nil, fieldErr(fmt.Sprintf("service.template.volumes[%d]", i), "set one of emptyDir (in-memory) and secret")
		}
		// Cloud Run's only medium: unset means MEMORY too.
		spec.Volumes = append(spec.Volumes, Volume{Name: vv.Name, EmptyDir: &EmptyDirVolumeSource{Medium: MediumMemory, SizeLimit: vv.EmptyDir.SizeLimit}})
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

// v1 is the volume in the v1 shape (a version defaults to latest, a mode
// of 0 to unset).
func (v *V2SecretVolume) v1() *SecretVolumeSource {
	out := &SecretVolumeSource{SecretName: v.Secret}
	if v.DefaultMode != 0 {
		m := v.DefaultMode
		out.DefaultMode = &m
	}
	for _, it := range v.Items {
		k := KeyToPath{Key: it.Version, Path: it.Path}
		if k.Key == "" {
			k.Key = "latest"
		}
		if it.Mode != 0 {
			m := it.Mode
			k.Mode = &m
		}
		out.Items = append(out.Items, k)
	}
	return out
}
