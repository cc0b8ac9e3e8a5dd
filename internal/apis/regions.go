package apis

import (
	"slices"
	"strings"
)

// Regions are the Cloud Run regions Usher serves besides its configured
// default region, also what gcloud's region prompt shows (locations.list).
var Regions = []string{
	"africa-south1", "asia-east1", "asia-east2", "asia-northeast1", "asia-northeast2", "asia-northeast3",
	"asia-south1", "asia-south2", "asia-southeast1", "asia-southeast2", "australia-southeast1",
	"australia-southeast2", "europe-central2", "europe-north1", "europe-north2", "europe-southwest1",
	"europe-west1", "europe-west10", "europe-west12", "europe-west2", "europe-west3", "europe-west4",
	"europe-west6", "europe-west8", "europe-west9", "me-central1", "me-central2", "me-west1",
	"northamerica-northeast1", "northamerica-northeast2", "northamerica-south1", "southamerica-east1",
	"southamerica-west1", "us-central1", "us-east1", "us-east4", "us-east5", "us-south1", "us-west1",
	"us-west2", "us-west3", "us-west4",
}

// RegionSet is the set of regions one server serves: Regions plus its
// default region. A path segment naming any other region is refused before it
// reaches a store key, a host name or a log line.
type RegionSet struct {
	defaultRegion string
}

// ServedRegions is the set a server with this default region serves. A
// default region that is not a well-formed region name adds nothing.
func ServedRegions(defaultRegion string) RegionSet {
	if !WellFormedRegion(defaultRegion) {
		defaultRegion = ""
	}
	return RegionSet{defaultRegion: defaultRegion}
}

// Valid reports whether region is served.
func (s RegionSet) Valid(region string) bool {
	return region != "" && (region == s.defaultRegion || ValidRegion(region))
}

// List is the served regions, the default last if it is not a listed one.
func (s RegionSet) List() []string {
	if s.defaultRegion == "" || slices.Contains(Regions, s.defaultRegion) {
		return slices.Clone(Regions)
	}
	return append(slices.Clone(Regions), s.defaultRegion)
}

// ValidRegion reports whether region is one of Regions (exact, case-sensitive).
func ValidRegion(region string) bool {
	return slices.Contains(Regions, region)
}

// WellFormedRegion reports whether s can name a region at all: a DNS label
// (it becomes part of service hosts) of lowercase letters, digits and dashes,
// starting with a letter and not ending with a dash, without "---".
func WellFormedRegion(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] < 'a' || s[0] > 'z' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return !strings.Contains(s, TagSeparator)
}
