package apis

import (
	"encoding/json"
	"testing"
)

// FuzzParseService: request bodies are untrusted. ParseService never
// panics, and what it accepts survives a second round unchanged.
func FuzzParseService(f *testing.F) {
	for _, seed := range []string{
		`{"metadata":{"name":"a"},"spec":{"template":{"spec":{"containers":[{"image":"x"}]}}}}`,
		`{"spec":{"template":{"spec":{"containers":[{"env":[{"name":"A","valueFrom":{"secretKeyRef":{}}}]}]}}}}`,
		`{"spec":{"template":{"spec":{"containers":[{"startupProbe":{"tcpSocket":{"port":8080}}}]}}}}`,
		`{"status":{"url":"x"},"metadata":{"annotations":{"run.googleapis.com/ingress":"internal"}}}`,
		`[]`, `null`, `{"spec":[]}`, `{"spec":{"traffic":[1,{"x":2}]}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseService(b)
		if err != nil {
			if _, ok := err.(*FieldError); !ok {
				t.Fatalf("ParseService error %T %v, want *FieldError", err, err)
			}
			return
		}
		again, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseService(again); err != nil {
			t.Errorf("ParseService(Marshal(%s)) = %v, want what it accepted to be accepted again", again, err)
		}
	})
}
