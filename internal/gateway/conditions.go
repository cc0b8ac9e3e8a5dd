package gateway

import (
	"net/http"

	"github.com/usher-run/usher/internal/iam"
	"github.com/usher-run/usher/internal/routing"
)

// conditionallyPublic reports whether a request without credentials may
// invoke tgt through a conditional allUsers binding whose condition holds
// now. Such a request is then served like one to a public service
// (untouched). Targets without conditional allUsers bindings cost one loop
// over their (usually empty) conditional grants.
func (g *Gateway) conditionallyPublic(r *http.Request, tgt *routing.Target) bool {
	if !tgt.Invokers.ConditionallyPublic() {
		return false
	}
	if r.Header.Get(headerServerlessAuthz) != "" || r.Header.Get(headerAuthorization) != "" {
		return false // credentials are checked as on any private service
	}
	return tgt.Invokers.DecideAt(iam.Principal{}, g.cfg.Now()).Allowed
}
