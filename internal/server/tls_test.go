package server

import "testing"

func TestResolvePublicURL(t *testing.T) {
	tests := []struct {
		raw     string
		tls     bool
		port    string
		want    string
		wantErr bool
	}{
		{"", false, "8080", "http://localhost:8080", false},
		{"", true, "8443", "https://localhost:8443", false},
		{"", true, "443", "https://localhost", false},
		{"https://run.example.com", true, "8443", "https://run.example.com", false},
		{"https://Run.Example.com:443/", true, "443", "https://run.example.com", false},
		{"https://run.example.com:8443", true, "443", "https://run.example.com:8443", false},
		{"http://10.0.0.5:80", false, "8080", "http://10.0.0.5", false},
		{"http://[::1]:8080", false, "8080", "http://[::1]:8080", false},
		{"ftp://x", false, "1", "", true},
		{"https://run.example.com/path", true, "1", "", true},
		{"https://user@run.example.com", true, "1", "", true},
		{"https://", true, "1", "", true},
	}
	for _, tt := range tests {
		got, err := resolvePublicURL(tt.raw, tt.tls, tt.port)
		if (err != nil) != tt.wantErr {
			t.Errorf("resolvePublicURL(%q) error = %v, want error %v", tt.raw, err, tt.wantErr)
			continue
		}
		if err == nil && got.String() != tt.want {
			t.Errorf("resolvePublicURL(%q, tls=%v, %s) = %s, want %s", tt.raw, tt.tls, tt.port, got, tt.want)
		}
	}
}
