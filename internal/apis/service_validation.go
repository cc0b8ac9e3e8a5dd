package apis

import (
	"encoding/json"
	"fmt"
	pathpkg "path"
	"regexp"
	"strconv"
	"strings"

	"github.com/usher-run/usher/internal/ratelimit"
)

// FieldError is a validation failure at a field path, e.g.
// "spec.template.spec.containers[0].image: is required".
type FieldError struct {
	Path    string
	Message string
}

func (e *FieldError) Error() string { return e.Path + ": " + e.Message }

func fieldErr(path, format string, args ...any) *FieldError {
	return &FieldError{Path: path, Message: fmt.Sprintf(format, args...)}
}

var (
	serviceNameRE = regexp.MustCompile(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)
	envNameRE     = regexp.MustCompile(`^[-._a-zA-Z][-._a-zA-Z0-9]*$`)
)

// MaxServiceNameLength is Cloud Run's limit.
const MaxServiceNameLength = 49

// ValidateServiceName checks a service name as Cloud Run does.
func ValidateServiceName(name string) error {
	if name == "" {
		return fieldErr("metadata.name", "is required")
	}
	if len(name) > MaxServiceNameLength || !serviceNameRE.MatchString(name) {
		return fieldErr("metadata.name", "%q must use only lowercase alphanumeric characters and dashes, start with a letter, not end with a dash, and be at most %d characters", name, MaxServiceNameLength)
	}
	if strings.Contains(name, TagSeparator) {
		return fieldErr("metadata.name", "%q must not contain %q: it separates a revision tag from its service in tag URLs", name, TagSeparator)
	}
	return nil
}

// TagSeparator joins a revision tag to its service's host (TAG---HOST). No
// service name, tag or revision name may contain it, so no tag host is ever
// another service's host or another tag's.
const TagSeparator = "---"

// MaxTagServiceLength is Cloud Run's bound on a tag and its service name
// together: both share the tag URL's DNS label.
const MaxTagServiceLength = 46

// ValidateTag checks a traffic tag of service as Cloud Run does.
func ValidateTag(path, service, tag string) error {
	if !serviceNameRE.MatchString(tag) {
		return fieldErr(path, "tag %q must use only lowercase alphanumeric characters and dashes, start with a letter and not end with a dash", tag)
	}
	if strings.Contains(tag, TagSeparator) {
		return fieldErr(path, "tag %q must not contain %q: it separates a revision tag from its service in tag URLs", tag, TagSeparator)
	}
	if len(tag)+len(service) > MaxTagServiceLength {
		return fieldErr(path, "traffic tag %q and service name %q together are too long: combined they cannot exceed %d characters", tag, service, MaxTagServiceLength)
	}
	return nil
}

// reservedEnv are set by the platform; users may not set them.
var reservedEnv = map[string]bool{"PORT": true, "K_SERVICE": true, "K_REVISION": true, "K_CONFIGURATION": true}

// Validate checks a service as create or replace receives it (after defaults).
func (s *Service) Validate() error {
	if err := ValidateServiceName(s.Metadata.Name); err != nil {
		return err
	}
	if err := validateAnnotations("metadata.annotations", s.Metadata.Annotations); err != nil {
		return err
	}
	tmpl := s.Spec.Template
	if err := validateAnnotations("spec.template.metadata.annotations", tmpl.Metadata.Annotations); err != nil {
		return err
	}
	if n := tmpl.Metadata.Name; n != "" {
		if !strings.HasPrefix(n, s.Metadata.Name+"-") || len(n) > 63 || !serviceNameRE.MatchString(n) {
			return fieldErr("spec.template.metadata.name", "revision name %q must start with %q and be a DNS label", n, s.Metadata.Name+"-")
		}
		if strings.Contains(n, TagSeparator) {
			return fieldErr("spec.template.metadata.name", "revision name %q must not contain %q: it separates a revision tag from its service in tag URLs", n, TagSeparator)
		}
	}
	spec := tmpl.Spec
	if len(spec.Containers) != 1 {
		return fieldErr("spec.template.spec.containers", "exactly one container is required, got %d", len(spec.Containers))
	}
	c := spec.Containers[0]
	if strings.TrimSpace(c.Image) == "" {
		return fieldErr("spec.template.spec.containers[0].image", "is required")
	}
	if strings.HasPrefix(c.Image, "/") {
		return fieldErr("spec.template.spec.containers[0].image", "%q is a path, not an image: to run a host executable write file://%s", c.Image, c.Image)
	}
	for i, e := range c.Env {
		p := fmt.Sprintf("spec.template.spec.containers[0].env[%d].name", i)
		if !envNameRE.MatchString(e.Name) {
			return fieldErr(p, "%q is not a valid environment variable name", e.Name)
		}
		if reservedEnv[e.Name] {
			return fieldErr(p, "%s is reserved: Cloud Run sets it for every instance", e.Name)
		}
		if e.ValueFrom != nil {
			if err := validateSecretRef(fmt.Sprintf("spec.template.spec.containers[0].env[%d]", i), e); err != nil {
				return err
			}
		}
	}
	if err := ValidateWorkingDir("spec.template.spec.containers[0].workingDir", c.WorkingDir); err != nil {
		return err
	}
	if err := validateVolumes(spec); err != nil {
		return err
	}
	if len(c.Ports) > 1 {
		return fieldErr("spec.template.spec.containers[0].ports", "at most one port may be set")
	}
	port := int32(DefaultContainerPort)
	if len(c.Ports) == 1 && c.Ports[0].ContainerPort != 0 {
		port = c.Ports[0].ContainerPort
	}
	if err := validateProbe("spec.template.spec.containers[0].startupProbe", c.StartupProbe, port, false); err != nil {
		return err
	}
	if err := validateProbe("spec.template.spec.containers[0].livenessProbe", c.LivenessProbe, port, true); err != nil {
		return err
	}
	if cc := spec.ContainerConcurrency; cc != nil && (*cc < 0 || *cc > MaxContainerConcurrency) {
		return fieldErr("spec.template.spec.containerConcurrency", "%d must be between 0 and %d", *cc, MaxContainerConcurrency)
	}
	if spec.TimeoutSeconds < 0 || spec.TimeoutSeconds > 3600 {
		return fieldErr("spec.template.spec.timeoutSeconds", "%d must be between 1 and 3600", spec.TimeoutSeconds)
	}
	if sa := spec.ServiceAccountName; sa != "" && !strings.Contains(sa, "@") {
		return fieldErr("spec.template.spec.serviceAccountName", "%q must be a service account email", sa)
	}
	minScale, err := scaleAnnotation(tmpl.Metadata.Annotations, AnnotationMinScale)
	if err != nil {
		return err
	}
	maxScale, err := scaleAnnotation(tmpl.Metadata.Annotations, AnnotationMaxScale)
	if err != nil {
		return err
	}
	if maxScale > 0 && minScale > maxScale {
		return fieldErr("spec.template.metadata.annotations", "%s (%d) exceeds %s (%d)", AnnotationMinScale, minScale, AnnotationMaxScale, maxScale)
	}
	return s.validateTraffic()
}

func (s *Service) validateTraffic() error {
	if len(s.Spec.Traffic) == 0 {
		return nil
	}
	total := int64(0)
	for i, t := range s.Spec.Traffic {
		p := fmt.Sprintf("spec.traffic[%d]", i)
		if t.Percent < 0 || t.Percent > 100 {
			return fieldErr(p+".percent", "%d must be between 0 and 100", t.Percent)
		}
		latest := t.LatestRevision != nil && *t.LatestRevision
		if latest == (t.RevisionName != "") {
			return fieldErr(p, "exactly one of revisionName or latestRevision: true is required")
		}
		if t.Tag != "" {
			if err := ValidateTag(p+".tag", s.Metadata.Name, t.Tag); err != nil {
				return err
			}
		}
		total += t.Percent
	}
	if total != 100 {
		return fieldErr("spec.traffic", "percentages must add up to 100, got %d", total)
	}
	return nil
}

func validateAnnotations(path string, ann map[string]string) error {
	rules := serviceAnnotations
	if strings.HasPrefix(path, "spec.template.") {
		rules = templateAnnotations
	}
	if err := checkSystemAnnotations(path, ann, rules); err != nil { // service_fields.go
		return err
	}
	if v, ok := ann[AnnotationInvokerIAMDisabled]; ok {
		if _, err := strconv.ParseBool(strings.ToLower(v)); err != nil {
			return fieldErr(path, "%s must be \"true\" or \"false\", got %q", AnnotationInvokerIAMDisabled, v)
		}
	}
	if v, ok := ann[AnnotationAnonymousRateLimit]; ok {
		if _, err := ratelimit.Parse(v); err != nil {
			return fieldErr(path, "%s: %v", AnnotationAnonymousRateLimit, err)
		}
	}
	if v, ok := ann[AnnotationCustomAudiences]; ok {
		var auds []string
		if err := json.Unmarshal([]byte(v), &auds); err != nil {
			return fieldErr(path, "%s must be a JSON array of strings, got %q", AnnotationCustomAudiences, v)
		}
		for _, a := range auds {
			if strings.TrimSpace(a) == "" {
				return fieldErr(path, "%s must not contain empty audiences", AnnotationCustomAudiences)
			}
		}
	}
	return nil
}

func scaleAnnotation(ann map[string]string, key string) (int, error) {
	v, ok := ann[key]
	if !ok || v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > 1000 {
		return 0, fieldErr("spec.template.metadata.annotations", "%s must be a whole number from 0 to 1000, got %q", key, v)
	}
	return n, nil
}

// ValidateWorkingDir checks a container's workingDir: unset, or a clean
// absolute path (in the container or the process sandbox, not on the host).
func ValidateWorkingDir(path, dir string) error {
	switch {
	case dir == "":
		return nil
	case !strings.HasPrefix(dir, "/"):
		return fieldErr(path, "%q must be an absolute path", dir)
	case strings.ContainsRune(dir, 0) || len(dir) > 4096:
		return fieldErr(path, "%q is not a valid path", dir)
	case pathpkg.Clean(dir) != dir:
		return fieldErr(path, "%q must be a clean path (no \"..\", \".\", \"//\" or trailing \"/\"): %q", dir, pathpkg.Clean(dir))
	}
	return nil
}

// reservedMountPaths are where the runtimes keep their own file systems: no
// volume may cover them (nor "/").
var reservedMountPaths = []string{"/proc", "/sys", "/dev"}

// validateVolumes checks volumes and their mounts: unique names, each
// volume an emptyDir of medium Memory or a secret of the project, each
// mount naming a volume at a clean absolute path of its own. Size limits
// are checked where memory quantities are read (admin); that the runtime
// account may read each secret, at deploy (admin) and at each start.
func validateVolumes(spec RevisionSpec) error {
	names := map[string]bool{}
	for i, v := range spec.Volumes {
		p := fmt.Sprintf("spec.template.spec.volumes[%d]", i)
		if !serviceNameRE.MatchString(v.Name) || len(v.Name) > 63 {
			return fieldErr(p+".name", "%q must be a DNS label: lowercase letters, digits and dashes", v.Name)
		}
		if names[v.Name] {
			return fieldErr(p+".name", "%q is the name of another volume", v.Name)
		}
		names[v.Name] = true
		switch {
		case v.EmptyDir != nil && v.Secret != nil:
			return fieldErr(p, "set one of emptyDir and secret")
		case v.Secret != nil:
			if err := validateSecretVolume(p+".secret", v.Secret); err != nil {
				return err
			}
			continue
		case v.EmptyDir == nil:
			return fieldErr(p, "only in-memory volumes (emptyDir, medium Memory) and secrets are supported by Usher")
		}
		if v.EmptyDir.Medium != MediumMemory {
			return fieldErr(p+".emptyDir.medium", "%q: only Memory is supported", v.EmptyDir.Medium)
		}
	}
	paths := map[string]bool{}
	for i, m := range spec.Containers[0].VolumeMounts {
		p := fmt.Sprintf("spec.template.spec.containers[0].volumeMounts[%d]", i)
		if !names[m.Name] {
			return fieldErr(p+".name", "%q names no volume of the revision", m.Name)
		}
		if m.MountPath == "" || m.MountPath == "/" {
			return fieldErr(p+".mountPath", "%q: a mount path below / is required", m.MountPath)
		}
		if err := ValidateWorkingDir(p+".mountPath", m.MountPath); err != nil {
			return err
		}
		for _, r := range reservedMountPaths {
			if m.MountPath == r || strings.HasPrefix(m.MountPath, r+"/") {
				return fieldErr(p+".mountPath", "%q is under %s, which the runtime provides", m.MountPath, r)
			}
		}
		if paths[m.MountPath] {
			return fieldErr(p+".mountPath", "%q is mounted twice", m.MountPath)
		}
		paths[m.MountPath] = true
	}
	return nil
}

// MaxProbeSeconds bounds a probe's timings.
const MaxProbeSeconds = 3600

// validateProbe checks a startup or liveness probe: at most one action (a
// liveness probe needs one), on the serving port, with sane timings.
func validateProbe(path string, p *Probe, port int32, needsAction bool) error {
	if p == nil {
		return nil
	}
	actions := 0
	for _, set := range []bool{p.TCPSocket != nil, p.HTTPGet != nil, p.GRPC != nil} {
		if set {
			actions++
		}
	}
	switch {
	case actions > 1:
		return fieldErr(path, "set one of tcpSocket, httpGet or grpc")
	case needsAction && actions == 0:
		return fieldErr(path, "tcpSocket, httpGet or grpc is required")
	}
	if g := p.GRPC; g != nil {
		if g.Port != 0 && g.Port != port {
			return fieldErr(path+".grpc.port", "%d is not the serving port %d: probes connect to the serving port only", g.Port, port)
		}
		if len(g.Service) > 1024 || strings.ContainsAny(g.Service, "\x00\r\n") {
			return fieldErr(path+".grpc.service", "%q is not a gRPC service name", g.Service)
		}
	}
	if p.TCPSocket != nil && p.TCPSocket.Port != 0 && p.TCPSocket.Port != port {
		return fieldErr(path+".tcpSocket.port", "%d is not the serving port %d: probes connect to the serving port only", p.TCPSocket.Port, port)
	}
	if h := p.HTTPGet; h != nil {
		if h.Port != 0 && h.Port != port {
			return fieldErr(path+".httpGet.port", "%d is not the serving port %d: probes connect to the serving port only", h.Port, port)
		}
		if h.Path != "" && (!strings.HasPrefix(h.Path, "/") || strings.ContainsAny(h.Path, " \r\n\x00") || len(h.Path) > 2048) {
			return fieldErr(path+".httpGet.path", "%q must be an absolute URL path", h.Path)
		}
	}
	for _, t := range []struct {
		name string
		v    int32
	}{
		{"initialDelaySeconds", p.InitialDelaySeconds},
		{"timeoutSeconds", p.TimeoutSeconds},
		{"periodSeconds", p.PeriodSeconds},
		{"failureThreshold", p.FailureThreshold},
		{"successThreshold", p.SuccessThreshold},
	} {
		if t.v < 0 || t.v > MaxProbeSeconds {
			return fieldErr(path+"."+t.name, "%d must be between 0 and %d", t.v, MaxProbeSeconds)
		}
	}
	if p.SuccessThreshold > 1 {
		return fieldErr(path+".successThreshold", "%d: only 1 is supported", p.SuccessThreshold)
	}
	if p.TimeoutSeconds > 0 && p.PeriodSeconds > 0 && p.TimeoutSeconds > p.PeriodSeconds {
		return fieldErr(path+".timeoutSeconds", "%d must not exceed periodSeconds (%d)", p.TimeoutSeconds, p.PeriodSeconds)
	}
	return nil
}

var (
	secretNameRE    = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,255}$`)
	secretVersionRE = regexp.MustCompile(`^(latest|[1-9][0-9]{0,9})$`)
)

// maxSecretFiles bounds the files of one secret volume.
const maxSecretFiles = 64

// validateSecretVolume checks a secret volume: a secret of the project, and
// files each a plain name (no directories: nothing can climb out of the
// mount), each once, with permission bits only.
func validateSecretVolume(path string, v *SecretVolumeSource) error {
	if !secretNameRE.MatchString(v.SecretName) {
		return fieldErr(path+".secretName", "%q is not the name of a secret of this project (secrets of other projects are not supported by Usher)", v.SecretName)
	}
	if v.DefaultMode != nil && (*v.DefaultMode < 0 || *v.DefaultMode > 0o777) {
		return fieldErr(path+".defaultMode", "%d: permission bits (0 to 0777, e.g. 292 for 0444)", *v.DefaultMode)
	}
	if len(v.Items) > maxSecretFiles {
		return fieldErr(path+".items", "at most %d files", maxSecretFiles)
	}
	seen := map[string]bool{}
	for i, it := range v.Items {
		p := fmt.Sprintf("%s.items[%d]", path, i)
		if !secretVersionRE.MatchString(it.Key) {
			return fieldErr(p+".key", "%q is not a secret version: use a version number or latest", it.Key)
		}
		if err := ValidateFileName(p+".path", it.Path); err != nil {
			return err
		}
		if seen[it.Path] {
			return fieldErr(p+".path", "%q is another file of the volume", it.Path)
		}
		seen[it.Path] = true
		if it.Mode != nil && (*it.Mode < 0 || *it.Mode > 0o777) {
			return fieldErr(p+".mode", "%d: permission bits (0 to 0777)", *it.Mode)
		}
	}
	return nil
}

// ValidateFileName checks a file name within a directory: not empty, not
// "." or "..", without "/" or NUL, at most 255 bytes.
func ValidateFileName(path, name string) error {
	if name == "" || name == "." || name == ".." || len(name) > 255 || strings.ContainsAny(name, "/\x00") {
		return fieldErr(path, "%q must be a file name in the mount's directory (no \"/\", not \".\" or \"..\")", name)
	}
	return nil
}

// validateSecretRef checks an env var that takes its value from a secret
// of the service's own project.
func validateSecretRef(path string, e EnvVar) error {
	secret, version, ok := e.SecretRef()
	switch {
	case !ok:
		return fieldErr(path+".valueFrom", "must name a secret (secretKeyRef)")
	case e.Value != "":
		return fieldErr(path+".value", "cannot be set together with valueFrom")
	case !secretNameRE.MatchString(secret):
		return fieldErr(path+".valueFrom.secretKeyRef.name", "%q is not the name of a secret of this project (secrets of other projects are not supported by Usher)", secret)
	case !secretVersionRE.MatchString(version):
		return fieldErr(path+".valueFrom.secretKeyRef.key", "%q is not a secret version: use a version number or latest", version)
	}
	return nil
}
