package apis

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
	Volumes                       []V2Volume         `json:"volumes,omitempty"`
	MaxInstanceRequestConcurrency int32              `json:"maxInstanceRequestConcurrency,omitempty"`
	Conditions                    []V2Condition      `json:"conditions,omitempty"`
	ObservedGeneration            int64              `json:"observedGeneration,omitempty,string"`
	Reconciling                   bool               `json:"reconciling,omitempty"`
	Etag                          string             `json:"etag,omitempty"`
}

// V2RevisionName is projects/P/locations/L/services/S/revisions/R.
func V2RevisionName(project, region, service, revision string) string {
	return ServiceResource(project, region, service) + "/revisions/" + revision
}
