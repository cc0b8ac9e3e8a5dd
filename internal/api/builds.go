package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/usher-run/usher/internal/admin"
)

// Building from source, Usher's own method for `usher run deploy --source`
// and `usher run jobs deploy --source`:
//
//	POST /v1/projects/P/locations/R/sourceBuilds?target=services/NAME (or jobs/NAME)
//	Content-Type: application/gzip   (a gzipped tar of the source directory)
//
// Refusals (authentication, permission, a bad archive, a language the
// caller may not build) are Google's JSON errors, answered before anything
// runs. Once the build runs the answer is 200 application/x-ndjson, one
// object a line as the tools write: {"log":"…"} lines, then
// {"image":"…"} or {"error":{"code","message","status"}}.
func (a *API) routesBuilds() {
	a.mux.Handle("POST /v1/projects/{ns}/locations/{region}/sourceBuilds", a.authed(a.buildSource))
	// `gcloud run deploy --source` first looks for its Artifact Registry
	// repository (cloud-run-source-deploy), then uploads to Cloud Storage
	// and runs Cloud Build: services Usher does not have. With gcloud's
	// artifactregistry endpoint pointed at Usher, that first call fails
	// fast with a message naming what does work.
	a.mux.Handle("/v1/projects/{ns}/locations/{region}/repositories", a.authed(a.gcloudSourceDeploy))
	a.mux.Handle("/v1/projects/{ns}/locations/{region}/repositories/{rest...}", a.authed(a.gcloudSourceDeploy))
}

func (a *API) gcloudSourceDeploy(w http.ResponseWriter, r *http.Request, c *caller) error {
	return admin.FailedPrecondition("Usher has no Artifact Registry or Cloud Build, so `gcloud run deploy --source` cannot build here. " +
		"Build and deploy with Usher's CLI instead: `usher run deploy NAME --source DIR` (jobs: `usher run jobs deploy NAME --source DIR`); " +
		"it builds a Dockerfile with the Docker engine or a Go main package with the Go toolchain on the Usher server.")
}

// maxBuildTime bounds a build, as Cloud Build's default timeout does.
const maxBuildTime = 10 * time.Minute

// BuildEvent is one line of a source build's answer.
type BuildEvent struct {
	Log   string      `json:"log,omitempty"`
	Image string      `json:"image,omitempty"`
	Error *BuildError `json:"error,omitempty"`
}

// BuildError is a failed build, in Google's error fields.
type BuildError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Status  string `json:"status"`
}

// ndjsonWriter turns the tools' output into {"log":…} lines, flushed as
// they come.
type ndjsonWriter struct {
	mu  sync.Mutex
	w   http.ResponseWriter
	enc *json.Encoder
}

func (n *ndjsonWriter) event(e BuildEvent) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.enc.Encode(e)
	if f, ok := n.w.(http.Flusher); ok {
		f.Flush()
	}
}

func (n *ndjsonWriter) Write(p []byte) (int, error) {
	n.event(BuildEvent{Log: strings.ToValidUTF8(string(p), "\uFFFD")})
	return len(p), nil
}

func (a *API) buildSource(w http.ResponseWriter, r *http.Request, c *caller) error {
	project, region := pathScope(r)
	kind, name, ok := strings.Cut(r.URL.Query().Get("target"), "/")
	if !ok || name == "" || (kind != "services" && kind != "jobs") {
		return invalidArgument("target must be services/NAME or jobs/NAME")
	}
	// The server's admin deadline does not apply here (a build takes
	// minutes): the check gets its own, the build maxBuildTime.
	actx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	b, err := a.cfg.Core.AuthorizeSourceBuild(actx, c, admin.SourceBuild{Project: project, Region: region, Kind: kind, Name: name})
	if err != nil {
		return err
	}
	out := &ndjsonWriter{w: w, enc: json.NewEncoder(w)}
	streaming := false
	bctx, bcancel := context.WithTimeout(r.Context(), maxBuildTime)
	defer bcancel()
	image, err := a.cfg.Core.BuildSource(bctx, c, b, r.Body, func(string) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		streaming = true
	}, out)
	if !streaming {
		return err // refused before anything ran: an ordinary error answer
	}
	if err != nil {
		var ae *Error
		if !errors.As(err, &ae) {
			a.cfg.Log.Error("source build", "target", kind+"/"+name, "err", err)
			ae = &Error{Code: http.StatusInternalServerError, Status: "INTERNAL", Message: "Internal error."}
		}
		out.event(BuildEvent{Error: &BuildError{Code: ae.Code, Message: ae.Message, Status: ae.Status}})
		return nil
	}
	out.event(BuildEvent{Image: image})
	return nil
}
