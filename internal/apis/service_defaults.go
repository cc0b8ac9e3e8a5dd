package apis

import "strconv"

// Defaults Cloud Run applies.
const (
	DefaultContainerConcurrency = 80
	MaxContainerConcurrency     = 1000
	DefaultTimeoutSeconds       = 300
	DefaultContainerPort        = 8080
)

// SetDefaults fills what the user left out, as Cloud Run does on create and
// replace. defaultServiceAccount is the project's default runtime identity.
func (s *Service) SetDefaults(project, defaultServiceAccount string) {
	s.APIVersion = ServingAPIVersion
	s.Kind = KindService
	s.Metadata.Namespace = project
	spec := &s.Spec.Template.Spec
	if spec.ContainerConcurrency == nil {
		cc := int64(DefaultContainerConcurrency)
		spec.ContainerConcurrency = &cc
	}
	if spec.TimeoutSeconds == 0 {
		spec.TimeoutSeconds = DefaultTimeoutSeconds
	}
	if spec.ServiceAccountName == "" {
		spec.ServiceAccountName = defaultServiceAccount
	}
	for i := range spec.Containers {
		c := &spec.Containers[i]
		if c.Name == "" && s.Metadata.Name != "" {
			// As Cloud Run names an unnamed container: SERVICE-1, ….
			c.Name = s.Metadata.Name + "-" + strconv.Itoa(i+1)
		}
		if len(c.Ports) == 0 {
			c.Ports = []ContainerPort{{Name: "http1", ContainerPort: DefaultContainerPort}}
		}
	}
	if len(s.Spec.Traffic) == 0 {
		latest := true
		s.Spec.Traffic = []TrafficTarget{{LatestRevision: &latest, Percent: 100}}
	}
}
