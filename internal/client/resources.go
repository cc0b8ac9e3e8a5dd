package client

import (
	"context"
	"math/rand/v2"
	"net/http"
	"net/url"
	"time"

	"github.com/usher-run/usher/internal/apis"
	"github.com/usher-run/usher/internal/iam"
)

// Paths of the resources the CLI addresses.

// ServicesPath is the collection of services in a project and region ("-": all).
func ServicesPath(project, region string) string {
	return "/v1/projects/" + url.PathEscape(project) + "/locations/" + url.PathEscape(region) + "/services"
}

// ServicePath names one service.
func ServicePath(project, region, name string) string {
	return ServicesPath(project, region) + "/" + url.PathEscape(name)
}

// RevisionsPath is the collection of revisions in a project and region.
func RevisionsPath(project, region string) string {
	return "/v1/projects/" + url.PathEscape(project) + "/locations/" + url.PathEscape(region) + "/revisions"
}

// ProjectPath names a project (Resource Manager).
func ProjectPath(project string) string { return "/v1/projects/" + url.PathEscape(project) }

// ServiceAccountsPath is the collection of a project's service accounts.
func ServiceAccountsPath(project string) string { return ProjectPath(project) + "/serviceAccounts" }

// ServiceAccountPath names one service account.
func ServiceAccountPath(project, email string) string {
	return ServiceAccountsPath(project) + "/" + url.PathEscape(email)
}

// GetService reads a service.
func (c *Client) GetService(ctx context.Context, project, region, name string) (*apis.Service, error) {
	var s apis.Service
	return &s, c.Do(ctx, http.MethodGet, ServicePath(project, region, name), nil, &s)
}

// CreateService creates a service.
func (c *Client) CreateService(ctx context.Context, project, region string, s *apis.Service) (*apis.Service, error) {
	var out apis.Service
	return &out, c.Do(ctx, http.MethodPost, ServicesPath(project, region), s, &out)
}

// ReplaceService replaces a service (compare-and-swap on resourceVersion).
func (c *Client) ReplaceService(ctx context.Context, project, region string, s *apis.Service) (*apis.Service, error) {
	var out apis.Service
	return &out, c.Do(ctx, http.MethodPut, ServicePath(project, region, s.Metadata.Name), s, &out)
}

// DeleteService deletes a service.
func (c *Client) DeleteService(ctx context.Context, project, region, name string) error {
	return c.Do(ctx, http.MethodDelete, ServicePath(project, region, name), nil, nil)
}

// ListServices lists services ("-" region for all).
func (c *Client) ListServices(ctx context.Context, project, region string) ([]apis.Service, error) {
	var l apis.List[apis.Service]
	return l.Items, c.Do(ctx, http.MethodGet, ServicesPath(project, region), nil, &l)
}

// ListRevisions lists revisions, of one service when service is not "".
func (c *Client) ListRevisions(ctx context.Context, project, region, service string) ([]apis.Revision, error) {
	var l apis.List[apis.Revision]
	path := RevisionsPath(project, region)
	if service != "" {
		path += "?labelSelector=" + url.QueryEscape(apis.LabelService+"="+service)
	}
	return l.Items, c.Do(ctx, http.MethodGet, path, nil, &l)
}

// WaitReady polls a service until its status reflects its generation and
// Ready is True or False (what gcloud waits for).
func (c *Client) WaitReady(ctx context.Context, project, region, name string) (*apis.Service, error) {
	delay := 100 * time.Millisecond
	for {
		s, err := c.GetService(ctx, project, region, name)
		if err != nil {
			return nil, err
		}
		if s.Status.ObservedGeneration == s.Metadata.Generation {
			for _, cond := range s.Status.Conditions {
				if cond.Type == apis.ConditionReady && cond.Status != apis.StatusUnknown {
					return s, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return s, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*2, time.Second)
	}
}

// GetIamPolicy reads the policy of the resource at path.
func (c *Client) GetIamPolicy(ctx context.Context, path string) (*iam.Policy, error) {
	var p iam.Policy
	return &p, c.Do(ctx, http.MethodPost, path+":getIamPolicy", map[string]any{"options": map[string]int{"requestedPolicyVersion": 3}}, &p)
}

// SetIamPolicy writes the policy of the resource at path (compare-and-swap on
// its etag, when set).
func (c *Client) SetIamPolicy(ctx context.Context, path string, p *iam.Policy) (*iam.Policy, error) {
	var out iam.Policy
	return &out, c.Do(ctx, http.MethodPost, path+":setIamPolicy", map[string]any{"policy": p}, &out)
}

// ModifyIamPolicy runs a read-modify-write of the policy at path, retrying with
// backoff when another writer got in between, so concurrent changes all land.
// modify reports whether it changed anything; if not, nothing is written.
func (c *Client) ModifyIamPolicy(ctx context.Context, path string, modify func(*iam.Policy) (bool, error)) (*iam.Policy, error) {
	delay := 20 * time.Millisecond
	for attempt := 0; ; attempt++ {
		p, err := c.GetIamPolicy(ctx, path)
		if err != nil && (!IsStatus(err, "UNAVAILABLE") || attempt >= 30) {
			return nil, err
		}
		if err != nil {
			if !sleepCtx(ctx, &delay) {
				return nil, ctx.Err()
			}
			continue
		}
		changed, err := modify(p)
		if err != nil || !changed {
			return p, err
		}
		if p.Version == 0 {
			p.Version = iam.Version1
		}
		out, err := c.SetIamPolicy(ctx, path, p)
		// ABORTED: another writer got in between. UNAVAILABLE: the store
		// did not answer and the write may or may not have landed; both are
		// safe to retry from the read, which sees the write if it landed
		// (modify then reports no change) and otherwise carries the etag
		// that makes the retried write a compare-and-swap.
		if err == nil || !(IsStatus(err, "ABORTED") || IsStatus(err, "UNAVAILABLE")) || attempt >= 30 {
			return out, err
		}
		if !sleepCtx(ctx, &delay) {
			return nil, ctx.Err()
		}
	}
}

// sleepCtx waits *delay plus jitter and doubles *delay (at most 1s); false
// if ctx ended first.
func sleepCtx(ctx context.Context, delay *time.Duration) bool {
	jitter := time.Duration(rand.Int64N(int64(*delay)))
	select {
	case <-ctx.Done():
		return false
	case <-time.After(*delay + jitter):
	}
	*delay = min(*delay*2, time.Second)
	return true
}
