package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/usher-run/usher/internal/gateway"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/logentries"
	"github.com/usher-run/usher/internal/logfilter"
	"github.com/usher-run/usher/internal/routing"
	"github.com/usher-run/usher/internal/store/bolt"
)

// TestRequestLogsUnderAFlood: the gateway's hooks never block on the
// request log: past the queue, refusals are dropped and counted while the
// rest of the chain (audit, metrics) still sees every one; anonymous
// rate-limit refusals are not logged one by one; forward-auth refusals are
// logged as the request the proxy asked about.
func TestRequestLogsUnderAFlood(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	book := logentries.New(logentries.Config{Store: st, QueueSize: 10}) // not running: nothing drains the queue
	passedOn := 0
	deny := logDenials(book, func(gateway.Denial) { passedOn++ })
	tgt := &routing.Target{Project: "p", Region: "r", Service: "s"}
	for range 1000 {
		r := httptest.NewRequest(http.MethodGet, "http://s.example/flood", nil)
		deny(gateway.Denial{Status: 401, Target: tgt, Principal: iam.Principal{}, Reason: "no credentials", Request: r})
	}
	if passedOn != 1000 || book.Dropped() != 990 {
		t.Errorf("passed on %d, dropped %d; want 1000 passed on and 990 dropped", passedOn, book.Dropped())
	}
	book.Flush(context.Background())

	r := httptest.NewRequest(http.MethodGet, "http://s.example/limited", nil)
	deny(gateway.Denial{Status: 429, Target: tgt, Reason: gateway.ReasonAnonymousRateLimit, Request: r})
	fa := httptest.NewRequest(http.MethodGet, "http://usher.example/forward-auth", nil)
	fa.Header.Set("X-Forwarded-Method", "POST")
	fa.Header.Set("X-Forwarded-Proto", "https")
	fa.Header.Set("X-Forwarded-Uri", "/upstream/path")
	deny(gateway.Denial{Status: 403, Target: tgt, Reason: "no run.routes.invoke", ForwardAuth: true, Host: "app.example", Request: fa})
	book.Flush(context.Background())

	f, _ := logfilter.Parse(`logName:requests`)
	page, err := book.List(context.Background(), logentries.Query{Project: "p", Filter: f, PageSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var limited, forwarded int
	for _, e := range page.Entries {
		switch {
		case strings.HasSuffix(e.HTTPRequest.RequestURL, "/limited"):
			limited++
		case e.HTTPRequest.RequestURL == "https://app.example/upstream/path" && e.HTTPRequest.RequestMethod == "POST" && e.HTTPRequest.Status == 403:
			forwarded++
		}
	}
	if len(page.Entries) != 11 || limited != 0 || forwarded != 1 {
		t.Errorf("%d request entries (%d rate-limited, %d forward-auth); want the 10 queued and the forward-auth refusal", len(page.Entries), limited, forwarded)
	}
}
