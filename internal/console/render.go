package console

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed web
var webFS embed.FS

// renderer holds the parsed pages and the embedded static assets.
type renderer struct {
	pages  map[string]*template.Template
	static fs.FS
	hashes map[string]string // asset name → short content hash, for cache busting
}

func newRenderer(now func() time.Time) (*renderer, error) {
	static, err := fs.Sub(webFS, "web/static")
	if err != nil {
		return nil, err
	}
	rd := &renderer{pages: map[string]*template.Template{}, static: static, hashes: map[string]string{}}
	err = fs.WalkDir(static, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(static, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		rd.hashes[p] = hex.EncodeToString(sum[:6])
		return nil
	})
	if err != nil {
		return nil, err
	}
	funcs := template.FuncMap{
		"asset": func(name string) (string, error) {
			h, ok := rd.hashes[name]
			if !ok {
				return "", fmt.Errorf("console: no asset %q", name)
			}
			return "/console/static/" + name + "?v=" + h, nil
		},
		"ago":      func(t time.Time) string { return ago(now(), t) },
		"datetime": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"clock":    func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
		"join":     strings.Join,
		"dict": func(kv ...any) (map[string]any, error) {
			if len(kv)%2 != 0 {
				return nil, errors.New("console: dict needs key, value pairs")
			}
			m := map[string]any{}
			for i := 0; i < len(kv); i += 2 {
				k, ok := kv[i].(string)
				if !ok {
					return nil, fmt.Errorf("console: dict key %v is not a string", kv[i])
				}
				m[k] = kv[i+1]
			}
			return m, nil
		},
	}
	pages, err := fs.Glob(webFS, "web/templates/pages/*.html")
	if err != nil {
		return nil, err
	}
	for _, p := range pages {
		name := path.Base(p)
		t, err := template.New(name).Funcs(funcs).ParseFS(webFS, "web/templates/layout.html", "web/templates/parts.html", p)
		if err != nil {
			return nil, fmt.Errorf("console: parsing %s: %w", name, err)
		}
		rd.pages[name] = t
	}
	return rd, nil
}

// ago renders how long before now t was, coarsely ("3 minutes ago").
func ago(now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := now.Sub(t)
	plural := func(n int, unit string) string {
		if n == 1 {
			return "1 " + unit + " ago"
		}
		return fmt.Sprintf("%d %ss ago", n, unit)
	}
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return plural(int(d/time.Minute), "minute")
	case d < 48*time.Hour:
		return plural(int(d/time.Hour), "hour")
	}
	return plural(int(d/(24*time.Hour)), "day")
}

// view is what every page template receives.
type view struct {
	Title string
	// Principal is the signed-in principal ("" on anonymous pages).
	Principal string
	// Initial is the principal's first letter, for the avatar.
	Initial string
	CSRF    string
	Project string
	Flash   string
	// Section is the side navigation's current entry: "" (Services) or "jobs".
	Section string
	Data    any
}

// newView starts a signed-in page's view.
func (c *Console) newView(s *session, project, title string, data any) *view {
	v := &view{Title: title, Project: project, Data: data}
	if s != nil {
		v.Principal, v.CSRF = s.principal.Member(), s.rec.CSRF
		if s.principal.Email != "" {
			v.Initial = strings.ToUpper(s.principal.Email[:1])
		}
		v.Flash = c.takeFlash(s)
	}
	return v
}

// render executes a page into a buffer first, so a template error becomes a
// clean 500 rather than half a page.
func (rd *renderer) render(w http.ResponseWriter, status int, page string, v *view) error {
	t, ok := rd.pages[page]
	if !ok {
		return fmt.Errorf("console: no page %q", page)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", v); err != nil {
		return fmt.Errorf("console: rendering %s: %w", page, err)
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, err := w.Write(buf.Bytes())
	return err
}

// assets serves the embedded static files; a request naming the current
// content hash may be cached for a day.
func (rd *renderer) assets() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("file")
		h, ok := rd.hashes[name]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if r.URL.Query().Get("v") == h {
			w.Header().Set("Cache-Control", "public, max-age=86400, immutable")
		} else {
			w.Header().Set("Cache-Control", "no-cache")
		}
		http.ServeFileFS(w, r, rd.static, name)
	})
}

// pageError is an error page: what the person sees (Code, Title, Message)
// and what only the log keeps (Err).
type pageError struct {
	Code    int
	Title   string
	Message string
	Err     error
}

func (e *pageError) Error() string {
	if e.Err != nil {
		return e.Title + ": " + e.Message + ": " + e.Err.Error()
	}
	return e.Title + ": " + e.Message
}

func (e *pageError) Unwrap() error { return e.Err }

func notFound(format string, args ...any) *pageError {
	return &pageError{Code: http.StatusNotFound, Title: "Not found", Message: fmt.Sprintf(format, args...)}
}

// errSignInRequired is the answer to a request without a valid session.
var errSignInRequired = &pageError{Code: http.StatusUnauthorized, Title: "Sign in to the Usher console"}

// fail maps an error to a page: API answers keep their status and message,
// anything else is a 500 whose cause only the log sees.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, s *session, err error) {
	var pe *pageError
	var ae *apiError
	switch {
	case errors.As(err, &pe):
	case errors.As(err, &ae):
		pe = pageErrorFromAPI(ae)
	default:
		pe = &pageError{Code: http.StatusInternalServerError, Title: "Something went wrong",
			Message: "The console could not complete this request. The server's log has the details.", Err: err}
	}
	level := slog.LevelInfo
	if pe.Code >= 500 {
		level = slog.LevelError
	}
	c.cfg.Log.Log(r.Context(), level, "console error", "method", r.Method, "path", r.URL.Path, "code", pe.Code, "err", pe.Error())
	page := "error.html"
	if pe == errSignInRequired {
		page = "signedout.html"
	}
	project := ""
	if s != nil {
		project = c.cfg.Project
		if p := r.PathValue("project"); p != "" {
			project = p
		}
	}
	v := c.newView(s, project, pe.Title, pe)
	if pe.Code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Cookie realm="usher-console"`)
	}
	if rerr := c.pages.render(w, pe.Code, page, v); rerr != nil {
		c.cfg.Log.Error("console: rendering an error page", "err", rerr)
		http.Error(w, pe.Title, pe.Code)
	}
}

// pageErrorFromAPI shows an API refusal as a page.
func pageErrorFromAPI(e *apiError) *pageError {
	pe := &pageError{Code: e.Code, Message: e.Message, Err: e}
	switch e.Code {
	case http.StatusForbidden:
		pe.Title = "You don't have permission"
	case http.StatusNotFound:
		pe.Title = "Not found"
	case http.StatusConflict:
		pe.Title = "Conflict"
	case http.StatusBadRequest:
		pe.Title = "Invalid request"
	case http.StatusUnauthorized:
		// The console's own token was refused: its signing key rotated
		// away, say. Signing in again mints a fresh one.
		pe.Title, pe.Message = "Please sign in again", "The server no longer accepts this session's credentials. Run `usher console` for a new sign-in link."
	default:
		pe.Code = http.StatusBadGateway
		pe.Title = "The admin API failed"
	}
	return pe
}

// apiHandler serves a console API route: errors in Google's JSON shape, as
// the CLI expects.
func (c *Console) apiHandler(h func(w http.ResponseWriter, r *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		err := h(w, r)
		if err == nil {
			return
		}
		var ae *apiError
		if !errors.As(err, &ae) {
			c.cfg.Log.Error("console api error", "path", r.URL.Path, "err", err)
			ae = &apiError{Code: http.StatusInternalServerError, Status: "INTERNAL", Message: "Internal error."}
		}
		if ae.Code == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="usher"`)
		}
		writeJSON(w, ae.Code, map[string]any{"error": map[string]any{"code": ae.Code, "status": ae.Status, "message": ae.Message}})
	}
}

func invalidRequest(format string, args ...any) *apiError {
	return &apiError{Code: http.StatusBadRequest, Status: "INVALID_ARGUMENT", Message: fmt.Sprintf(format, args...)}
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	_, err = w.Write(append(b, '\n'))
	return err
}
