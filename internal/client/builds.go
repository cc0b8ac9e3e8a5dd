package client

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// BuildSource uploads a gzipped tar of a source directory to be built for
// target ("services/NAME" or "jobs/NAME"), copies the build's output to
// logs as it arrives, and returns the image to deploy. Builds are not
// bounded by the client's call timeout; cancel ctx to stop waiting.
func (c *Client) BuildSource(ctx context.Context, project, region, target string, source io.Reader, logs io.Writer) (string, error) {
	tok, err := c.AccessToken(ctx)
	if err != nil {
		return "", err
	}
	u := strings.TrimRight(c.cfg.Server, "/") + "/v1/projects/" + url.PathEscape(project) + "/locations/" + url.PathEscape(region) +
		"/sourceBuilds?target=" + url.QueryEscape(target)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, source)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/gzip")
	hc := *c.http
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("cannot reach the Usher server at %s (is `usher serve` running?): %w", c.cfg.Server, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var e struct {
			Error *APIError `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error != nil {
			return "", e.Error
		}
		return "", &APIError{Code: resp.StatusCode, Status: http.StatusText(resp.StatusCode), Message: strings.TrimSpace(string(b))}
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var ev struct {
			Log   string    `json:"log"`
			Image string    `json:"image"`
			Error *APIError `json:"error"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return "", fmt.Errorf("reading the build's output: %w", err)
		}
		switch {
		case ev.Error != nil:
			return "", ev.Error
		case ev.Image != "":
			return ev.Image, nil
		case ev.Log != "":
			io.WriteString(logs, ev.Log)
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("reading the build's output: %w", err)
	}
	return "", fmt.Errorf("the build's output ended without a result")
}
