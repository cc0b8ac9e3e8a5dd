package pool

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkColdStart: from a request for a revision with no instance to its
// first answer (process runtime, a small Go server).
func BenchmarkColdStart(b *testing.B) {
	app := build(b, "./testdata/slowapp")
	p := New(Config{Runtime: newProcessRuntime(), StopGrace: time.Second})
	defer p.Close(context.Background())
	ctx := context.Background()
	var total time.Duration
	for i := 0; b.Loop(); i++ {
		rev := revision(fmt.Sprintf("svc-%05d-abc", i), app)
		begin := time.Now()
		if err := call(ctx, p, rev, "/"); err != nil {
			b.Fatal(err)
		}
		total += time.Since(begin)
		p.Retire(ctx, func(string) bool { return false })
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/coldstart")
}
