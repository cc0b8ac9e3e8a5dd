package apis

// Knative's Configuration and Route of a service: Cloud Run v1 serves them
// as read-only views of the service they belong to (one each, with the
// service's name), for `gcloud run configurations|routes list|describe`.

// Kinds of the views.
const (
	KindConfiguration = "Configuration"
	KindRoute         = "Route"
	LabelRoute        = "serving.knative.dev/route"
)

// Configuration is a service's template and its revisions' progress.
type Configuration struct {
	APIVersion string              `json:"apiVersion"`
	Kind       string              `json:"kind"`
	Metadata   ObjectMeta          `json:"metadata"`
	Spec       ConfigurationSpec   `json:"spec"`
	Status     ConfigurationStatus `json:"status"`
}

type ConfigurationSpec struct {
	Template RevisionTemplate `json:"template"`
}

type ConfigurationStatus struct {
	ObservedGeneration        int64       `json:"observedGeneration,omitempty"`
	Conditions                []Condition `json:"conditions,omitempty"`
	LatestReadyRevisionName   string      `json:"latestReadyRevisionName,omitempty"`
	LatestCreatedRevisionName string      `json:"latestCreatedRevisionName,omitempty"`
}

// Route is a service's traffic and URL.
type Route struct {
	APIVersion string      `json:"apiVersion"`
	Kind       string      `json:"kind"`
	Metadata   ObjectMeta  `json:"metadata"`
	Spec       RouteSpec   `json:"spec"`
	Status     RouteStatus `json:"status"`
}

type RouteSpec struct {
	Traffic []TrafficTarget `json:"traffic,omitempty"`
}

type RouteStatus struct {
	ObservedGeneration int64           `json:"observedGeneration,omitempty"`
	Conditions         []Condition     `json:"conditions,omitempty"`
	URL                string          `json:"url,omitempty"`
	Address            *Addressable    `json:"address,omitempty"`
	Traffic            []TrafficTarget `json:"traffic,omitempty"`
}

// viewMeta is the service's metadata as its view's: same name, namespace
// and labels, plus the label naming the service.
func viewMeta(s *Service) ObjectMeta {
	m := s.Metadata
	m.SelfLink = ""
	m.Labels = map[string]string{}
	for k, v := range s.Metadata.Labels {
		m.Labels[k] = v
	}
	m.Labels[LabelService] = s.Metadata.Name
	return m
}

// ConfigurationOf is s's Configuration.
func ConfigurationOf(s *Service) Configuration {
	c := Configuration{APIVersion: ServingAPIVersion, Kind: KindConfiguration, Metadata: viewMeta(s),
		Spec: ConfigurationSpec{Template: s.Spec.Template},
		Status: ConfigurationStatus{ObservedGeneration: s.Status.ObservedGeneration,
			LatestReadyRevisionName: s.Status.LatestReadyRevisionName, LatestCreatedRevisionName: s.Status.LatestCreatedRevisionName}}
	for _, cond := range s.Status.Conditions {
		if cond.Type == "Ready" || cond.Type == "ConfigurationsReady" {
			cond.Type = "Ready"
			c.Status.Conditions = append(c.Status.Conditions, cond)
			break
		}
	}
	return c
}

// RouteOf is s's Route.
func RouteOf(s *Service) Route {
	r := Route{APIVersion: ServingAPIVersion, Kind: KindRoute, Metadata: viewMeta(s),
		Spec:   RouteSpec{Traffic: s.Spec.Traffic},
		Status: RouteStatus{ObservedGeneration: s.Status.ObservedGeneration, URL: s.Status.URL, Address: s.Status.Address, Traffic: s.Status.Traffic}}
	for _, cond := range s.Status.Conditions {
		if cond.Type == "Ready" || cond.Type == "RoutesReady" {
			cond.Type = "Ready"
			r.Status.Conditions = append(r.Status.Conditions, cond)
			break
		}
	}
	return r
}
