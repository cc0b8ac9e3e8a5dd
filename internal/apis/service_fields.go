package apis

// What a v1 request may carry, field by field.
//
// encoding/json drops a field the Go types lack, so a setting Usher does not
// implement (a secret reference, a volume, a probe) would be accepted and
// silently ignored: a service the user believes is protected would not be. ParseService therefore walks the raw
// JSON against v1Fields first, and Validate checks every annotation with
// meaning to Cloud Run against v1Annotations. Each field and annotation of
// Cloud Run's v1 shape is one of:
//
//   - implemented: stored and honoured;
//   - server-owned: clients send back what they read (status, uid,
//     resourceVersion, the URLs); ignored and replaced by the server;
//   - accepted only with the value that is what Usher does anyway
//     (protocol "TCP");
//   - refused with INVALID_ARGUMENT naming the field.
//
// A field name the v1 shape does not define is refused too.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// v1Field says what Usher does with one field of the v1 shape.
type v1Field struct {
	output bool               // server-owned: tolerated, ignored
	hint   bool               // stored and shown back, not honoured
	refuse string             // refused with this reason when set to a non-empty value
	check  func(any) string   // when set: the value's problem, or ""
	fields map[string]v1Field // a message (or a list of messages) with these fields
}

var (
	v1In     = v1Field{}
	v1Output = v1Field{output: true}
	// v1Hint is stored and shown back but does not change what Usher does.
	v1Hint = v1Field{hint: true}
)

func v1Refused(why string) v1Field { return v1Field{refuse: why} }

func v1Message(fields map[string]v1Field) v1Field { return v1Field{fields: fields} }

const notByUsher = "is not supported by Usher"

var v1ObjectMeta = map[string]v1Field{
	"name":                       v1In,
	"namespace":                  v1In,
	"labels":                     v1In,
	"annotations":                v1In, // checked key by key in Validate
	"resourceVersion":            v1In, // compare-and-swap on replace
	"selfLink":                   v1Output,
	"uid":                        v1Output,
	"generation":                 v1Output,
	"creationTimestamp":          v1Output,
	"deletionTimestamp":          v1Output,
	"deletionGracePeriodSeconds": v1Output,
	"clusterName":                v1Output,
	"generateName":               v1Refused(notByUsher + ": set metadata.name"),
	"ownerReferences":            v1Refused(notByUsher),
	"finalizers":                 v1Refused(notByUsher),
}

var v1Probe = map[string]v1Field{
	"tcpSocket": v1Message(map[string]v1Field{"port": v1In}),
	"httpGet": v1Message(map[string]v1Field{
		"path":        v1In,
		"port":        v1In,
		"httpHeaders": v1Refused(notByUsher + ": probes send no extra headers"),
	}),
	// Honoured by httpGet probes and liveness probes; a tcpSocket startup
	// probe is the runtime's own start check (see Probe).
	"initialDelaySeconds": v1In,
	"timeoutSeconds":      v1In,
	"periodSeconds":       v1In,
	"failureThreshold":    v1In,
	"successThreshold":    v1Hint,
	"grpc":                v1Message(map[string]v1Field{"port": v1In, "service": v1In}),
	"exec":                v1Refused(notByUsher),
}

var v1Container = map[string]v1Field{
	"name":    v1In,
	"image":   v1In,
	"command": v1In,
	"args":    v1In,
	"env": v1Message(map[string]v1Field{
		"name":  v1In,
		"value": v1In,
		"valueFrom": v1Message(map[string]v1Field{
			"secretKeyRef":    v1Message(map[string]v1Field{"name": v1In, "key": v1In}),
			"configMapKeyRef": v1Refused(notByUsher + " (no config maps): use a secret or a literal value"),
		}),
	}),
	"ports": v1Message(map[string]v1Field{
		"name":          {check: oneOf("http1", PortNameH2C)},
		"containerPort": v1In,
		"protocol":      {check: oneOf("TCP")},
	}),
	"resources": v1Message(map[string]v1Field{
		"limits":   {check: onlyKeys("cpu", "memory")},
		"requests": v1Refused(notByUsher + ": set resources.limits"),
	}),
	"startupProbe":   v1Message(v1Probe),
	"livenessProbe":  v1Message(v1Probe),
	"readinessProbe": v1Refused(notByUsher),
	"workingDir":     v1In, // an absolute path (Validate)
	"volumeMounts": v1Message(map[string]v1Field{
		"name":      v1In,
		"mountPath": v1In,
		"readOnly":  v1Refused(notByUsher + ": in-memory volumes are writable, secret volumes read-only"),
		"subPath":   v1Refused(notByUsher),
	}),
	"envFrom":                  v1Refused(notByUsher + " (no secrets or config maps): set env"),
	"securityContext":          v1Refused(notByUsher),
	"imagePullPolicy":          v1Refused(notByUsher),
	"terminationMessagePath":   v1Refused(notByUsher),
	"terminationMessagePolicy": v1Refused(notByUsher),
}

var v1RevisionSpec = map[string]v1Field{
	"containerConcurrency": v1In,
	"timeoutSeconds":       v1In,
	"serviceAccountName":   v1In,
	"containers":           v1Message(v1Container),
	"volumes": v1Message(map[string]v1Field{
		"name": v1In,
		"emptyDir": v1Message(map[string]v1Field{
			"medium":    {check: oneOf(MediumMemory)},
			"sizeLimit": v1In,
		}),
		"secret": v1Message(map[string]v1Field{
			"secretName":  v1In,
			"items":       v1Message(map[string]v1Field{"key": v1In, "path": v1In, "mode": v1In}),
			"defaultMode": v1In,
			"optional":    v1Refused(notByUsher + ": a secret volume's secret must exist"),
		}),
		"configMap": v1Refused(notByUsher + ": only in-memory volumes (emptyDir, medium Memory) and secrets"),
		"csi":       v1Refused(notByUsher + " (no Cloud Storage): only in-memory volumes (emptyDir, medium Memory) and secrets"),
		"nfs":       v1Refused(notByUsher + ": only in-memory volumes (emptyDir, medium Memory) and secrets"),
	}),
	"imagePullSecrets":   v1Refused(notByUsher),
	"nodeSelector":       v1Refused(notByUsher + " (no GPUs)"),
	"runtimeClassName":   v1Refused(notByUsher),
	"enableServiceLinks": v1Refused(notByUsher),
}

var v1TrafficTarget = map[string]v1Field{
	"configurationName": v1In,
	"revisionName":      v1In,
	"latestRevision":    v1In,
	"percent":           v1In,
	"tag":               v1In,
	"url":               v1Output,
}

// v1Fields is the v1 Service, top down.
var v1Fields = map[string]v1Field{
	"apiVersion": v1In,
	"kind":       v1In,
	"metadata":   v1Message(v1ObjectMeta),
	"spec": v1Message(map[string]v1Field{
		"template": v1Message(map[string]v1Field{
			"metadata": v1Message(v1ObjectMeta),
			"spec":     v1Message(v1RevisionSpec),
		}),
		"traffic": v1Message(v1TrafficTarget),
	}),
	"status": v1Output,
}

// ParseService decodes a v1 Service from a request body, refusing any field
// Usher would otherwise drop (see v1Fields). Errors are *FieldError.
func ParseService(b []byte) (*Service, error) { return parseV1[Service](b, "service", v1Fields) }

// parseV1 decodes a v1 resource (what names it in errors) after walking
// its raw JSON against fields.
func parseV1[T any](b []byte, what string, fields map[string]v1Field) (*T, error) {
	var raw any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&raw); err != nil {
		return nil, &FieldError{Path: what, Message: "invalid JSON: " + err.Error()}
	}
	if err := walkV1("", raw, fields); err != nil {
		return nil, err
	}
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, &FieldError{Path: what, Message: "invalid JSON: " + err.Error()}
	}
	return &v, nil
}

// walkV1 checks one message against its fields. Keys are walked in order so
// the first refusal is the same every time.
func walkV1(path string, v any, fields map[string]v1Field) error {
	if v == nil {
		return nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil // a shape mismatch is json.Unmarshal's to report
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		val := m[k]
		p := k
		if path != "" {
			p = path + "." + k
		}
		f, ok := fields[k]
		switch {
		case !ok:
			return fieldErr(p, "is not a field of a Cloud Run v1 %s", messageName(path))
		case f.output:
			continue
		case f.refuse != "":
			if isSet(val) {
				return fieldErr(p, "%s", f.refuse)
			}
		case f.check != nil:
			if why := f.check(val); why != "" {
				return fieldErr(p, "%s", why)
			}
		case f.fields != nil:
			if list, ok := val.([]any); ok {
				for i, el := range list {
					if err := walkV1(fmt.Sprintf("%s[%d]", p, i), el, f.fields); err != nil {
						return err
					}
				}
				continue
			}
			if err := walkV1(p, val, f.fields); err != nil {
				return err
			}
		}
	}
	return nil
}

// isSet: v is anything but null, "", false, 0, [] or {}. A message whose
// fields are all empty ({"tcpSocket": {}}) is set: it chooses something.
func isSet(v any) bool {
	switch t := v.(type) {
	case nil:
		return false
	case bool:
		return t
	case string:
		return t != ""
	case json.Number:
		f, err := t.Float64()
		return err != nil || f != 0
	case []any:
		return len(t) > 0
	case map[string]any:
		return len(t) > 0
	}
	return true
}

func messageName(path string) string {
	if path == "" {
		return "Service"
	}
	if i := strings.LastIndex(path, "."); i >= 0 {
		path = path[i+1:]
	}
	if i := strings.Index(path, "["); i >= 0 {
		path = path[:i]
	}
	return path
}

// oneOf accepts an unset value or one of the given strings.
func oneOf(allowed ...string) func(any) string {
	return func(v any) string {
		s, ok := v.(string)
		if v == nil || (ok && (s == "" || slices.Contains(allowed, s))) {
			return ""
		}
		return fmt.Sprintf("%v %s: only %s", v, notByUsher, strings.Join(allowed, ", "))
	}
}

// onlyKeys accepts a map whose keys are among the given ones.
func onlyKeys(allowed ...string) func(any) string {
	return func(v any) string {
		m, _ := v.(map[string]any)
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if !slices.Contains(allowed, k) {
				return fmt.Sprintf("%q %s: only %s", k, notByUsher, strings.Join(allowed, ", "))
			}
		}
		return ""
	}
}

// Annotations with meaning to Cloud Run that Usher does not implement are
// refused; so is any other key under a system prefix, since Cloud Run would
// read it. Keys outside the system prefixes are the user's.
const (
	AnnotationDefaultURLDisabled = "run.googleapis.com/default-url-disabled"
	AnnotationOperationID        = "run.googleapis.com/operation-id"
	AnnotationCPUThrottling      = "run.googleapis.com/cpu-throttling"
	AnnotationStartupCPUBoost    = "run.googleapis.com/startup-cpu-boost"
)

// annotationRule is what Usher does with one annotation: accepted when
// allowed is empty, otherwise only with one of the allowed values (what
// Usher does anyway).
type annotationRule struct {
	allowed []string
	why     string
}

var (
	annAny       = annotationRule{}
	annServerOwn = annotationRule{} // replaced by the server on write
)

// serviceAnnotations and templateAnnotations list the system annotations
// accepted on a service and on its revision template.
var serviceAnnotations = map[string]annotationRule{
	AnnotationInvokerIAMDisabled: annAny, // validated below
	AnnotationIAPEnabled:         {allowed: []string{"true", "false"}, why: "run.googleapis.com/iap-enabled is \"true\" or \"false\""},
	AnnotationCustomAudiences:    annAny,
	AnnotationAnonymousRateLimit: annAny, // validated below
	AnnotationDescription:        annAny,
	AnnotationClientName:         annAny,
	AnnotationClientVersion:      annAny,
	AnnotationLaunchStage:        annAny,
	AnnotationOperationID:        annAny,
	AnnotationIngressStatus:      annServerOwn,
	AnnotationURLs:               annServerOwn,
	AnnotationCreator:            annServerOwn,
	AnnotationLastModifier:       annServerOwn,
	AnnotationIngress: {allowed: []string{IngressAll, IngressInternal, IngressInternalAndLB},
		why: "ingress is \"all\", \"internal\" or \"internal-and-cloud-load-balancing\""},
	AnnotationDefaultURLDisabled: {allowed: []string{"true", "false"},
		why: "run.googleapis.com/default-url-disabled is \"true\" or \"false\""},
}

var templateAnnotations = map[string]annotationRule{
	AnnotationMinScale:      annAny, // validated below
	AnnotationMaxScale:      annAny,
	AnnotationClientName:    annAny,
	AnnotationClientVersion: annAny,
	AnnotationCPUThrottling: {allowed: []string{"true"},
		why: "Usher allocates CPU as Cloud Run's default does; only \"true\" is accepted"},
	// gcloud sends "true" on every deploy of a new service. It is a
	// performance hint that changes nobody's access; Usher keeps it and
	// starts instances with their limits either way.
	AnnotationStartupCPUBoost: annAny,
}

// ServerOwnedAnnotations are service annotations the server writes on every
// read; a write's values are dropped and replaced.
var ServerOwnedAnnotations = []string{AnnotationIngressStatus, AnnotationURLs}

func checkSystemAnnotations(path string, ann map[string]string, rules map[string]annotationRule) error {
	keys := make([]string, 0, len(ann))
	for k := range ann {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !isSystemKey(k) {
			continue
		}
		r, ok := rules[k]
		if !ok {
			return fieldErr(path, "%s %s", k, notByUsher)
		}
		if len(r.allowed) > 0 && !slices.Contains(r.allowed, strings.ToLower(ann[k])) {
			return fieldErr(path, "%s=%q: %s", k, ann[k], r.why)
		}
	}
	return nil
}

// V1FieldPaths lists every field path of the v1 Service Usher knows, with
// what it does with it: "implemented", "server-owned", "refused" (when set to
// anything but its empty value), "restricted" (some values only) or "hint"
// (stored and shown back, not honoured). Lists are
// written as path[], e.g. "spec.template.spec.containers[].image".
func V1FieldPaths() map[string]string {
	out := map[string]string{}
	var walk func(prefix string, fields map[string]v1Field)
	walk = func(prefix string, fields map[string]v1Field) {
		for k, f := range fields {
			p := prefix + k
			switch {
			case f.output:
				out[p] = "server-owned"
			case f.hint:
				out[p] = "hint"
			case f.refuse != "":
				out[p] = "refused"
			case f.check != nil:
				out[p] = "restricted"
			case f.fields != nil:
				if listFields[p] {
					p += "[]"
				}
				walk(p+".", f.fields)
			default:
				out[p] = "implemented"
			}
		}
	}
	walk("", v1Fields)
	return out
}

// listFields are the v1 fields that hold a list of messages.
var listFields = map[string]bool{
	"spec.traffic":                                 true,
	"spec.template.spec.containers":                true,
	"spec.template.spec.containers[].env":          true,
	"spec.template.spec.containers[].ports":        true,
	"spec.template.spec.containers[].volumeMounts": true,
	"spec.template.spec.volumes":                   true,
	"spec.template.spec.volumes[].secret.items":    true,
}
