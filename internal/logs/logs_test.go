package logs

import (
	"fmt"
	"testing"
)

func TestBookKeepsNewestInOrder(t *testing.T) {
	b := New[Entry](3)
	for i := range 5 {
		b.Add("p/r/s", Entry{Text: fmt.Sprint(i), Revision: fmt.Sprintf("rev%d", i%2)})
	}
	b.Add("p/r/other", Entry{Text: "x"})
	tests := []struct {
		name  string
		limit int
		keep  func(Entry) bool
		want  string
	}{
		{"all kept", 0, nil, "234"},
		{"limit takes the newest", 2, nil, "34"},
		{"filter", 0, func(e Entry) bool { return e.Revision == "rev0" }, "24"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ""
			for _, e := range b.Read("p/r/s", tt.limit, tt.keep) {
				got += e.Text
			}
			if got != tt.want {
				t.Errorf("Read = %q, want %q", got, tt.want)
			}
		})
	}
	b.Forget("p/r/s")
	if got := b.Read("p/r/s", 0, nil); len(got) != 0 {
		t.Errorf("after Forget: %v", got)
	}
	if got := b.Read("p/r/other", 0, nil); len(got) != 1 {
		t.Errorf("other service lost its entries: %v", got)
	}
}
