package apis

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/usher-run/usher/internal/ratelimit"
)

// Condition types and statuses clients poll for.
const (
	ConditionReady               = "Ready"
	ConditionConfigurationsReady = "ConfigurationsReady"
	ConditionRoutesReady         = "RoutesReady"
	ConditionResourcesAvailable  = "ResourcesAvailable"
	ConditionContainerHealthy    = "ContainerHealthy"
	ConditionActive              = "Active"
	StatusTrue                   = "True"
	StatusFalse                  = "False"
	StatusUnknown                = "Unknown"
)

// InvokerIAMDisabled reports whether the invoker check is off for the service
// (annotation values are parsed case-insensitively: gcloud writes "True").
func (s *Service) InvokerIAMDisabled() bool {
	v, ok := s.Metadata.Annotations[AnnotationInvokerIAMDisabled]
	if !ok {
		return false
	}
	b, err := strconv.ParseBool(strings.ToLower(v))
	return err == nil && b
}

// IAPEnabled reports whether the service is behind the identity-aware proxy.
func (s *Service) IAPEnabled() bool {
	return strings.EqualFold(strings.TrimSpace(s.Metadata.Annotations[AnnotationIAPEnabled]), "true")
}

// IAPServiceAgent is the member of the IAP service agent of project
// (gcloud's --iap grants it roles/run.invoker): requests IAP let through
// are invoked as it.
func IAPServiceAgent(project string) string {
	return "serviceAccount:service-" + ProjectNumber(project) + "@gcp-sa-iap.iam.gserviceaccount.com"
}

// AnonymousRateLimit is the limit on the service's anonymous callers; the
// zero Limit when none is set (or the value does not parse, which
// validation refuses).
func (s *Service) AnonymousRateLimit() ratelimit.Limit {
	v, ok := s.Metadata.Annotations[AnnotationAnonymousRateLimit]
	if !ok {
		return ratelimit.Limit{}
	}
	l, err := ratelimit.Parse(v)
	if err != nil {
		return ratelimit.Limit{}
	}
	return l
}

// CustomAudiences returns the audiences besides the URL that tokens may carry.
func (s *Service) CustomAudiences() []string {
	v, ok := s.Metadata.Annotations[AnnotationCustomAudiences]
	if !ok {
		return nil
	}
	var auds []string
	if json.Unmarshal([]byte(v), &auds) != nil {
		return nil
	}
	return auds
}

// Ready reports whether the service's Ready condition is True.
func (s *Service) Ready() bool {
	return conditionStatus(s.Status.Conditions, ConditionReady) == StatusTrue
}

func conditionStatus(conds []Condition, typ string) string {
	for _, c := range conds {
		if c.Type == typ {
			return c.Status
		}
	}
	return ""
}

// SetCondition sets or replaces a condition, keeping lastTransitionTime when the
// status does not change.
func SetCondition(conds []Condition, c Condition, now time.Time) []Condition {
	for i, old := range conds {
		if old.Type != c.Type {
			continue
		}
		if old.Status == c.Status {
			c.LastTransitionTime = old.LastTransitionTime
		} else {
			c.LastTransitionTime = now.UTC().Format(time.RFC3339)
		}
		conds[i] = c
		return conds
	}
	c.LastTransitionTime = now.UTC().Format(time.RFC3339)
	return append(conds, c)
}

// Ingress values (annotation run.googleapis.com/ingress, gcloud --ingress).
const (
	// IngressAll: anyone may send requests (the default).
	IngressAll = "all"
	// IngressInternal: only Usher's own instances and the operator's
	// internal networks (usher serve --internal-cidrs) may.
	IngressInternal = "internal"
	// IngressInternalAndLB: internal, plus the operator's trusted proxies
	// (usher serve --trusted-proxies), Usher's stand-in for Cloud Load
	// Balancing.
	IngressInternalAndLB = "internal-and-cloud-load-balancing"
)

// Ingress is the service's ingress setting, IngressAll when unset.
func (s *Service) Ingress() string {
	v := strings.ToLower(strings.TrimSpace(s.Metadata.Annotations[AnnotationIngress]))
	if v == "" {
		return IngressAll
	}
	return v
}

// DefaultURLDisabled reports whether the service's run URLs are off
// (annotation run.googleapis.com/default-url-disabled; gcloud writes "True").
func (s *Service) DefaultURLDisabled() bool {
	b, err := strconv.ParseBool(strings.ToLower(strings.TrimSpace(s.Metadata.Annotations[AnnotationDefaultURLDisabled])))
	return err == nil && b
}
