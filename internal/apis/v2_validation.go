package apis

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Decoding v2 requests: which fields a request may carry and how.

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
	enumIngress = map[int]string{0: "INGRESS_TRAFFIC_UNSPECIFIED", 1: V2IngressAll, 2: V2IngressInternalOnly,
		3: V2IngressInternalLoadBalancer, 4: "INGRESS_TRAFFIC_NONE"}
	enumLaunchStage = map[int]string{0: v2LaunchStageUnspecified, 6: "UNIMPLEMENTED", 7: "PRELAUNCH", 1: "EARLY_ACCESS",
		2: "ALPHA", 3: "BETA", 4: V2LaunchStageGA, 5: "DEPRECATED"}
	enumExecutionEnvironment = map[int]string{0: "EXECUTION_ENVIRONMENT_UNSPECIFIED", 1: "EXECUTION_ENVIRONMENT_GEN1", 2: "EXECUTION_ENVIRONMENT_GEN2"}
	enumTrafficType          = map[int]string{0: v2TrafficUnspecified, 1: V2TrafficLatest, 2: V2TrafficRevision}
	enumMedium               = map[int]string{0: "MEDIUM_UNSPECIFIED", 1: V2MediumMemory}
	enumScalingMode          = map[int]string{0: "SCALING_MODE_UNSPECIFIED", 1: "AUTOMATIC", 2: "MANUAL"}
	enumFunctionalType       = map[int]string{0: "FUNCTIONAL_TYPE_UNSPECIFIED", 1: "FUNCTIONAL_TYPE_AGENT", 2: "FUNCTIONAL_TYPE_MCP_SERVER"}
)

var v2ContainerSchema = v2Schema{
	"name":    v2In,
	"image":   v2In,
	"command": v2In,
	"args":    v2In,
	"env": v2Message(v2Schema{
		"name":  v2In,
		"value": v2In,
		"valueSource": v2Message(v2Schema{
			"secretKeyRef": v2Message(v2Schema{"secret": v2In, "version": v2In}),
		}),
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
	"startupProbe":   v2Message(v2ProbeSchema),
	"livenessProbe":  v2Message(v2ProbeSchema),
	"readinessProbe": notImplemented("is not supported by Usher: instances are checked once, by TCP, at start"),
	"volumeMounts": v2Message(v2Schema{
		"name":      v2In,
		"mountPath": v2In,
		"subPath":   notImplemented(""),
	}),
	"workingDir":      v2In,
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
	"volumes": v2Message(v2Schema{
		"name":     v2In,
		"emptyDir": v2Message(v2Schema{"medium": {enum: enumMedium}, "sizeLimit": v2In}),
		"secret": v2Message(v2Schema{
			"secret":      v2In,
			"items":       v2Message(v2Schema{"path": v2In, "version": v2In, "mode": v2Num}),
			"defaultMode": v2Num,
		}),
		"cloudSqlInstance": notImplemented("is not supported by Usher: only emptyDir and secret volumes"),
		"gcs":              notImplemented("is not supported by Usher: only emptyDir and secret volumes"),
		"nfs":              notImplemented("is not supported by Usher: only emptyDir and secret volumes"),
	}),
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
	"ingress":            onlyEnum(enumIngress, V2IngressAll, V2IngressInternalOnly, V2IngressInternalLoadBalancer),
	"launchStage":        {enum: enumLaunchStage},
	"template":           v2Message(v2TemplateSchema),
	"traffic":            v2Message(v2Schema{"type": {enum: enumTrafficType}, "revision": v2In, "percent": v2Num, "tag": v2In}),
	"invokerIamDisabled": v2In,
	"iapEnabled":         v2In,
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
	"defaultUriDisabled":     v2In,
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

// v2ProbeSchema is a startup or liveness probe (validated as v1's).
var v2ProbeSchema = v2Schema{
	"tcpSocket": v2Message(v2Schema{"port": v2Num}),
	"httpGet": v2Message(v2Schema{
		"path":        v2In,
		"port":        v2Num,
		"httpHeaders": notImplemented("is not supported by Usher: probes send no extra headers"),
	}),
	"grpc":                v2Message(v2Schema{"port": v2Num, "service": v2In}),
	"initialDelaySeconds": v2Num,
	"timeoutSeconds":      v2Num,
	"periodSeconds":       v2Num,
	"failureThreshold":    v2Num,
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
