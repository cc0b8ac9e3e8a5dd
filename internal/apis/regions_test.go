package apis

import (
	"slices"
	"strings"
	"testing"
)

func TestValidRegion(t *testing.T) {
	tests := []struct {
		region string
		ok     bool
	}{
		{"us-central1", true},
		{"europe-west1", true},
		{"", false},
		{"US-CENTRAL1", false},
		{"us-central1 ", false},
		{"us-central1/..", false},
		{"..", false},
		{"mars-north1", false},
		{"us-central1\n", false},
		{"us-central1.example.com", false},
	}
	for _, tt := range tests {
		if got := ValidRegion(tt.region); got != tt.ok {
			t.Errorf("ValidRegion(%q) = %v, want %v", tt.region, got, tt.ok)
		}
	}
}

func TestServedRegions(t *testing.T) {
	tests := []struct {
		defaultRegion string
		region        string
		ok            bool
	}{
		{"us-central1", "us-central1", true},
		{"us-central1", "europe-west1", true},
		{"us-central1", "local", false},
		{"local", "local", true},
		{"local", "us-east1", true},
		{"local", "other", false},
		{"", "", false},
		{"Bad.Region", "Bad.Region", false},
		{"a---b", "a---b", false},
		{"a/b", "a/b", false},
	}
	for _, tt := range tests {
		if got := ServedRegions(tt.defaultRegion).Valid(tt.region); got != tt.ok {
			t.Errorf("ServedRegions(%q).Valid(%q) = %v, want %v", tt.defaultRegion, tt.region, got, tt.ok)
		}
	}
	if got := ServedRegions("local").List(); !slices.Contains(got, "local") || len(got) != len(Regions)+1 {
		t.Errorf("ServedRegions(local).List() = %v, want Regions plus local", got)
	}
	if got := ServedRegions("us-east1").List(); len(got) != len(Regions) {
		t.Errorf("ServedRegions(us-east1).List() has %d regions, want %d", len(got), len(Regions))
	}
}

func TestWellFormedRegion(t *testing.T) {
	for _, r := range Regions {
		if !WellFormedRegion(r) {
			t.Errorf("WellFormedRegion(%q) = false for a listed region", r)
		}
	}
	for _, r := range []string{"", "-a", "a-", "1a", "a_b", "a.b", "a b", "a---b", strings.Repeat("a", 64), "é"} {
		if WellFormedRegion(r) {
			t.Errorf("WellFormedRegion(%q) = true, want false", r)
		}
	}
}

func FuzzServedRegions(f *testing.F) {
	for _, s := range []string{"us-central1", "local", "", "a---b", "../x", "US-EAST1", "a\x00b"} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, defaultRegion, region string) {
		set := ServedRegions(defaultRegion)
		if !set.Valid(region) {
			return
		}
		// Whatever is served is a well-formed DNS label and is listed.
		if !WellFormedRegion(region) {
			t.Fatalf("ServedRegions(%q).Valid(%q) but it is not well formed", defaultRegion, region)
		}
		if !slices.Contains(set.List(), region) {
			t.Fatalf("ServedRegions(%q).Valid(%q) but List() lacks it", defaultRegion, region)
		}
		if region != defaultRegion && !ValidRegion(region) {
			t.Fatalf("ServedRegions(%q).Valid(%q) for an unlisted region", defaultRegion, region)
		}
	})
}
