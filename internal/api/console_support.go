package api

import (
	"net/http"

	"github.com/usher-run/usher/internal/iam"
)

// Authenticate returns the principal calling r, authenticated exactly as
// every admin API method authenticates its caller (a Bearer access token from
// Usher's issuer). A failure is an *Error with status UNAUTHENTICATED.
//
// It exists for the web console's sign-in endpoint, which the CLI calls with
// its access token to obtain a one-time sign-in code for its principal; the
// console then makes every call through this API's handler.
func (a *API) Authenticate(r *http.Request) (iam.Principal, error) {
	c, err := a.authenticate(r)
	if err != nil {
		return iam.Principal{}, err
	}
	return c.Principal, nil
}
