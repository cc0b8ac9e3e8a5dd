package apis

import (
	"strings"
	"testing"
)

func TestValidateServiceName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"hello", true},
		{"a", true},
		{"my-service-2", true},
		{"a--b", true},
		{strings.Repeat("a", MaxServiceNameLength), true},
		{"", false},
		{"Hello", false},
		{"1abc", false},
		{"abc-", false},
		{"a_b", false},
		{strings.Repeat("a", MaxServiceNameLength+1), false},
		// The attacker's: "tag---svc" would be the host of tag "tag" of service "svc".
		{"blue---hello", false},
		{"a---", false},
		{"a----b", false},
	}
	for _, tt := range tests {
		err := ValidateServiceName(tt.name)
		if got := err == nil; got != tt.ok {
			t.Errorf("ValidateServiceName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func TestServiceNameWithTagSeparatorRefusedAsCloudRun(t *testing.T) {
	err := ValidateServiceName("blue---hello")
	if err == nil || !strings.Contains(err.Error(), "metadata.name") || !strings.Contains(err.Error(), `"---"`) {
		t.Fatalf("got %v, want a metadata.name error naming \"---\"", err)
	}
}

func validService(name string) *Service {
	s := &Service{}
	s.Metadata.Name = name
	s.Spec.Template.Spec.Containers = []Container{{Image: "example.com/img"}}
	return s
}

func TestValidateTagsAndRevisionNames(t *testing.T) {
	yes := true
	tests := []struct {
		desc     string
		revision string
		tag      string
		ok       bool
	}{
		{"no tag", "", "", true},
		{"plain tag", "", "blue", true},
		{"revision name", "hello-v2", "", true},
		{"tag with separator", "", "a---b", false},
		{"tag uppercase", "", "Blue", false},
		{"tag with dot", "", "a.b", false},
		{"tag ends with dash", "", "blue-", false},
		{"tag and service too long", "", strings.Repeat("t", MaxTagServiceLength-len("hello")+1), false},
		{"tag and service at the bound", "", strings.Repeat("t", MaxTagServiceLength-len("hello")), true},
		{"revision with separator", "hello---x", "", false},
	}
	for _, tt := range tests {
		s := validService("hello")
		s.Spec.Template.Metadata.Name = tt.revision
		if tt.tag != "" {
			s.Spec.Traffic = []TrafficTarget{{LatestRevision: &yes, Percent: 100, Tag: tt.tag}}
		}
		err := s.Validate()
		if got := err == nil; got != tt.ok {
			t.Errorf("%s: Validate() = %v, want ok=%v", tt.desc, err, tt.ok)
		}
	}
}

func TestValidateAnonymousRateLimit(t *testing.T) {
	for _, tt := range []struct {
		value string
		ok    bool
	}{
		{"5", true},
		{"0.5,burst=3,total=100", true},
		{"0", false},
		{"five", false},
		{"5,burst=-1", false},
	} {
		s := validService("hello")
		s.Metadata.Annotations = map[string]string{AnnotationAnonymousRateLimit: tt.value}
		err := s.Validate()
		if got := err == nil; got != tt.ok {
			t.Errorf("Validate with %s=%q: %v, want ok=%v", AnnotationAnonymousRateLimit, tt.value, err, tt.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "metadata.annotations") {
			t.Errorf("error %q lacks the field path", err)
		}
		if tt.ok && !s.AnonymousRateLimit().Enabled() {
			t.Errorf("AnonymousRateLimit() of %q is not enabled", tt.value)
		}
	}
	// Other keys under Usher's prefix stay refused.
	s := validService("hello")
	s.Metadata.Annotations = map[string]string{"usher.dev/other": "x"}
	if s.Validate() == nil {
		t.Error("an unknown usher.dev/ annotation was accepted")
	}
}
