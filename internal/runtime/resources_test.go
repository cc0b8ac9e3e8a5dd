package runtime

import "testing"

func TestParseCPU(t *testing.T) {
	for in, want := range map[string]int64{
		"1": 1000, "2": 2000, "0.5": 500, "1.5": 1500, "500m": 500, "1000m": 1000, "0.08": 80, "8": 8000, "1m": 1,
	} {
		got, err := ParseCPU(in)
		if err != nil || got != want {
			t.Errorf("ParseCPU(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "0m", "-1", "1.5m", "0.0001", "abc", "1e3", "3/4", "1 ", "m", ".", "1.2.3", "1k", "99999999999999999999"} {
		if got, err := ParseCPU(in); err == nil {
			t.Errorf("ParseCPU(%q) = %d, want an error", in, got)
		}
	}
}

func TestParseMemory(t *testing.T) {
	for in, want := range map[string]int64{
		"512Mi": 512 << 20, "1Gi": 1 << 30, "1.5Gi": 3 << 29, "256M": 256e6, "1G": 1e9, "128k": 128e3,
		"4Ki": 4096, "1048576": 1 << 20, "2Ti": 2 << 40, "0.5Mi": 1 << 19,
	} {
		got, err := ParseMemory(in)
		if err != nil || got != want {
			t.Errorf("ParseMemory(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "0Mi", "-1Gi", "1GB", "1gi", "abc", "0.5", "1e9", "Mi", "1.1", "9Ei"} {
		if got, err := ParseMemory(in); err == nil {
			t.Errorf("ParseMemory(%q) = %d, want an error", in, got)
		}
	}
}
