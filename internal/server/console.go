package server

import (
	"log/slog"
	"strings"
	"time"

	"github.com/usher-run/usher/internal/admin"
	"github.com/usher-run/usher/internal/api"
	"github.com/usher-run/usher/internal/console"
	"github.com/usher-run/usher/internal/gateway"
	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/logs"
	"github.com/usher-run/usher/internal/store"
)

// newConsole builds the web console over the admin core: it runs every
// operation as the signed-in principal, and keeps only its sign-in codes and
// sessions in the store. Sign-in codes are asked for with an API access
// token (adminAPI's authentication).
func newConsole(cfg Config, st store.Store, roles *iam.Roles, core *admin.Core, adminAPI *api.API, denials console.DenialLog, log *slog.Logger) (*console.Console, error) {
	return console.New(console.Config{
		Core:          core,
		Authenticate:  adminAPI.Authenticate,
		Store:         st,
		Roles:         roles,
		Project:       cfg.Project,
		Denials:       denials,
		SecureCookies: strings.HasPrefix(cfg.PublicURL, "https://"),
		Log:           log,
	})
}

// recordDenial keeps the gateway's refusals per service for the console.
// Anonymous rate-limit refusals are counted in the metrics instead: a flood
// of them would push every other refusal out of the book.
func recordDenial(book *logs.Book[console.Denial], mets *metrics) func(gateway.Denial) {
	return func(d gateway.Denial) {
		mets.denied(d)
		if d.Target == nil {
			return
		}
		if d.Reason == gateway.ReasonAnonymousRateLimit {
			mets.limited(d.Target.Project, d.Target.Region, d.Target.Service)
			return
		}
		principal := ""
		if d.Principal.Kind != iam.Anonymous {
			principal = d.Principal.Member()
		}
		book.Add(d.Target.Project+"/"+d.Target.Region+"/"+d.Target.Service,
			console.Denial{Time: time.Now(), Status: d.Status, Principal: principal, Reason: d.Reason})
	}
}

// denialLog serves the console's Logs tab from the recorded refusals.
type denialLog struct{ book *logs.Book[console.Denial] }

func (l denialLog) Denials(project, region, service string, max int) []console.Denial {
	got := l.book.Read(project+"/"+region+"/"+service, max, nil)
	for i, j := 0, len(got)-1; i < j; i, j = i+1, j-1 { // newest first
		got[i], got[j] = got[j], got[i]
	}
	return got
}
