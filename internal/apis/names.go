package apis

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strings"
)

// ProjectNumber derives a stable 12-digit project number from a project ID, so
// service URLs and default service accounts are deterministic per project, as
// Cloud Run's are.
func ProjectNumber(projectID string) string {
	sum := sha256.Sum256([]byte("usher-project:" + projectID))
	n := binary.BigEndian.Uint64(sum[:8])%900_000_000_000 + 100_000_000_000
	return fmt.Sprintf("%d", n)
}

// ServiceHost is the host name (no port) a service answers on:
// NAME-PROJECTNUMBER.REGION.DOMAIN, Cloud Run's deterministic URL form.
func ServiceHost(name, projectID, region, domain string) string {
	return name + "-" + ProjectNumber(projectID) + "." + region + "." + domain
}

// ServiceURL is the service's URL given the gateway's scheme and port
// (port "" or the scheme's default is left out).
func ServiceURL(scheme, name, projectID, region, domain, port string) string {
	u := scheme + "://" + ServiceHost(name, projectID, region, domain)
	if port != "" && !(scheme == "http" && port == "80") && !(scheme == "https" && port == "443") {
		u += ":" + port
	}
	return u
}

// DefaultServiceAccount is the runtime identity of revisions that name none,
// in the form of Google's default compute service account.
func DefaultServiceAccount(projectID string) string {
	return ProjectNumber(projectID) + "-compute@developer.gserviceaccount.com"
}

// ServiceAccountEmail is NAME@PROJECT.iam.gserviceaccount.com.
func ServiceAccountEmail(name, projectID string) string {
	return name + "@" + projectID + ".iam.gserviceaccount.com"
}

// ServiceAccountProject returns the project of a user-managed service
// account email, or "" when it is not one.
func ServiceAccountProject(email string) string {
	_, domain, ok := strings.Cut(email, "@")
	if !ok {
		return ""
	}
	project, ok := strings.CutSuffix(domain, ".iam.gserviceaccount.com")
	if !ok {
		return ""
	}
	return project
}

// ServiceResource is the IAM resource name of a service.
func ServiceResource(project, region, name string) string {
	return "projects/" + project + "/locations/" + region + "/services/" + name
}

// ProjectResource is the IAM resource name of a project.
func ProjectResource(project string) string { return "projects/" + project }

// ServiceAccountResource is the IAM resource name of a service account.
func ServiceAccountResource(project, email string) string {
	return "projects/" + project + "/serviceAccounts/" + email
}

// TagURL is the URL of a revision tag given its service's URL:
// scheme://TAG---SERVICEHOST[:PORT], Cloud Run's form.
func TagURL(serviceURL, tag string) string {
	return strings.Replace(serviceURL, "://", "://"+tag+"---", 1)
}
