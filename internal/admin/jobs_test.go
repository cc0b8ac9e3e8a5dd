package admin

import "testing"

func TestSplitTaskName(t *testing.T) {
	for _, tc := range []struct {
		in    string
		ex    string
		index int
		ok    bool
	}{
		{"batch-ab12c-task7", "batch-ab12c", 7, true},
		{"batch-ab12c-task10", "batch-ab12c", 10, true},
		{"batch-ab12c-task", "", 0, false},
		{"task7", "", 0, false},
		{"batch-ab12c-7", "", 0, false},
		{"", "", 0, false},
	} {
		ex, index, ok := splitTaskName(tc.in)
		if ex != tc.ex || index != tc.index || ok != tc.ok {
			t.Errorf("splitTaskName(%q): got %q %d %v, want %q %d %v", tc.in, ex, index, ok, tc.ex, tc.index, tc.ok)
		}
	}
}

// FuzzSplitTaskName: task names come from request paths; any string is
// split without a panic, and TaskName's names split back.
func FuzzSplitTaskName(f *testing.F) {
	for _, s := range []string{"a-task0", "-task1", "task", "x-task99999999999999999999", "é-task1"} {
		f.Add(s, int32(3))
	}
	f.Fuzz(func(t *testing.T, name string, index int32) {
		splitTaskName(name)
		if index < 0 || name == "" {
			return
		}
		ex, got, ok := splitTaskName(TaskName(name, index))
		if !ok || ex != name || got != int(index) {
			t.Errorf("splitTaskName(TaskName(%q, %d)): got %q %d %v", name, index, ex, got, ok)
		}
	})
}
