package admin

import (
	"context"
	"slices"

	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/state"
)

// ServedAPIs are the Google APIs Usher serves. Service Usage reports them
// enabled in every project; they cannot be turned off, and no other API can
// be turned on.
var ServedAPIs = []string{
	// cloudapis is the bundle gcloud projects create enables: the Google
	// Cloud APIs a project uses, as far as Usher serves them.
	"cloudapis.googleapis.com",
	"cloudresourcemanager.googleapis.com",
	"iam.googleapis.com",
	"iamcredentials.googleapis.com",
	"logging.googleapis.com",
	"run.googleapis.com",
	"secretmanager.googleapis.com",
	"serviceusage.googleapis.com",
}

var apiTitles = map[string]string{
	"cloudapis.googleapis.com":            "Google Cloud APIs",
	"cloudresourcemanager.googleapis.com": "Cloud Resource Manager API",
	"iam.googleapis.com":                  "Identity and Access Management (IAM) API",
	"iamcredentials.googleapis.com":       "IAM Service Account Credentials API",
	"logging.googleapis.com":              "Cloud Logging API",
	"run.googleapis.com":                  "Cloud Run Admin API",
	"secretmanager.googleapis.com":        "Secret Manager API",
	"serviceusage.googleapis.com":         "Service Usage API",
}

// APIService is a Service Usage v1 Service: one API and its state in a project.
type APIService struct {
	Name   string            `json:"name"`
	Parent string            `json:"parent"`
	Config map[string]string `json:"config"`
	State  string            `json:"state"`
}

func apiService(p state.Project, name string) APIService {
	st := "DISABLED"
	if slices.Contains(ServedAPIs, name) {
		st = "ENABLED"
	}
	return APIService{Name: "projects/" + p.ProjectNumber + "/services/" + name, Parent: "projects/" + p.ProjectNumber,
		Config: map[string]string{"name": name, "title": apiTitles[name]}, State: st}
}

// GetAPIService reports one API's state (serviceusage.services.get).
func (c *Core) GetAPIService(ctx context.Context, caller *Caller, project, name string) (APIService, error) {
	p, err := c.AuthorizeProject(ctx, caller, project, iam.PermServiceUsageGet)
	if err != nil {
		return APIService{}, err
	}
	return apiService(p, name), nil
}

// ListAPIServices lists the APIs in a state: "ENABLED" (Usher's), "DISABLED"
// (none that Usher knows of) or "" for all it knows (serviceusage.services.list).
func (c *Core) ListAPIServices(ctx context.Context, caller *Caller, project, stateFilter string) ([]APIService, error) {
	p, err := c.AuthorizeProject(ctx, caller, project, iam.PermServiceUsageList)
	if err != nil {
		return nil, err
	}
	switch stateFilter {
	case "", "ENABLED":
	case "DISABLED":
		return []APIService{}, nil
	default:
		return nil, InvalidArgument("filter state:%s: use state:ENABLED or state:DISABLED", stateFilter)
	}
	out := make([]APIService, 0, len(ServedAPIs))
	for _, name := range ServedAPIs {
		out = append(out, apiService(p, name))
	}
	return out, nil
}

// EnableAPIServices enables APIs (serviceusage.services.enable): a no-op
// for what Usher serves, refused for anything else, since a client that
// believes an API is on would call it and fail later.
func (c *Core) EnableAPIServices(ctx context.Context, caller *Caller, project string, names []string) ([]APIService, error) {
	p, err := c.AuthorizeProject(ctx, caller, project, iam.PermServiceUsageEnable)
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, InvalidArgument("serviceIds: name at least one service")
	}
	out := make([]APIService, 0, len(names))
	for _, name := range names {
		if !slices.Contains(ServedAPIs, name) {
			return nil, FailedPrecondition("Usher does not serve %s, so it cannot be enabled; Usher serves %v", name, ServedAPIs)
		}
		out = append(out, apiService(p, name))
	}
	return out, nil
}

// DisableAPIService disables an API (serviceusage.services.disable): what
// Usher serves cannot be turned off; anything else is already off.
func (c *Core) DisableAPIService(ctx context.Context, caller *Caller, project, name string) (APIService, error) {
	p, err := c.AuthorizeProject(ctx, caller, project, iam.PermServiceUsageDisable)
	if err != nil {
		return APIService{}, err
	}
	if slices.Contains(ServedAPIs, name) {
		return APIService{}, FailedPrecondition("%s is part of Usher and cannot be disabled", name)
	}
	return apiService(p, name), nil
}
