package logentries

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/usher-run/usher/internal/audit"
	"github.com/usher-run/usher/internal/logfilter"
	"github.com/usher-run/usher/internal/state"
)

// Entry is Google's LogEntry (logging.googleapis.com v2), the fields Usher
// fills.
type Entry struct {
	LogName          string            `json:"logName"`
	Resource         Resource          `json:"resource"`
	Timestamp        time.Time         `json:"timestamp"`
	ReceiveTimestamp time.Time         `json:"receiveTimestamp"`
	Severity         string            `json:"severity"`
	InsertID         string            `json:"insertId"`
	HTTPRequest      *HTTPRequest      `json:"httpRequest,omitempty"`
	Labels           map[string]string `json:"labels,omitempty"`
	TextPayload      string            `json:"textPayload,omitempty"`
	JSONPayload      map[string]any    `json:"jsonPayload,omitempty"`
	ProtoPayload     map[string]any    `json:"protoPayload,omitempty"`
}

// Resource is a LogEntry's monitored resource.
type Resource struct {
	Type   string            `json:"type"`
	Labels map[string]string `json:"labels"`
}

// HTTPRequest is a LogEntry's httpRequest.
type HTTPRequest struct {
	RequestMethod string `json:"requestMethod"`
	RequestURL    string `json:"requestUrl"`
	Status        int    `json:"status"`
	// Latency is a protobuf Duration in JSON: "0.012s".
	Latency   string `json:"latency,omitempty"`
	RemoteIP  string `json:"remoteIp,omitempty"`
	UserAgent string `json:"userAgent,omitempty"`
}

// Field gives e's value of a filter field (logfilter.Entry); ok is false
// when e has no such field, so a comparison on it does not match.
func (e *Entry) Field(field string) (string, bool) {
	if label, ok := strings.CutPrefix(field, "resource.labels."); ok {
		v, ok := e.Resource.Labels[label]
		return v, ok
	}
	switch field {
	case "resource.type":
		return e.Resource.Type, true
	case "severity":
		return e.Severity, true
	case "timestamp":
		return e.Timestamp.Format(time.RFC3339Nano), true
	case "receiveTimestamp":
		return e.ReceiveTimestamp.Format(time.RFC3339Nano), true
	case "logName":
		return e.LogName, true
	case "insertId":
		return e.InsertID, true
	case "textPayload":
		return e.TextPayload, e.JSONPayload == nil && e.ProtoPayload == nil
	}
	if h := e.HTTPRequest; h != nil {
		switch field {
		case "httpRequest.status":
			return strconv.Itoa(h.Status), true
		case "httpRequest.requestMethod":
			return h.RequestMethod, true
		case "httpRequest.requestUrl":
			return h.RequestURL, true
		}
	}
	return "", false
}

var _ logfilter.Entry = (&Entry{}).Field

func logName(project, log string) string { return "projects/" + project + "/logs/" + log }

func revisionResource(project, region, service, revision string) Resource {
	return Resource{Type: ResourceRevision, Labels: map[string]string{
		"project_id": project, "location": region, "service_name": service,
		"configuration_name": service, "revision_name": revision,
	}}
}

// serviceEntry turns a stored record of a service's stream into a LogEntry.
func serviceEntry(project, region, service, stream, id string, received time.Time, r record) Entry {
	e := Entry{
		Resource:         revisionResource(project, region, service, r.Revision),
		Timestamp:        r.Time,
		ReceiveTimestamp: received,
		InsertID:         id,
		Severity:         "DEFAULT",
	}
	if e.ReceiveTimestamp.IsZero() {
		e.ReceiveTimestamp = r.Time
	}
	if stream == state.LogStreamRequests && r.HTTP != nil {
		e.LogName = logName(project, LogRequests)
		e.HTTPRequest = &HTTPRequest{
			RequestMethod: r.HTTP.Method, RequestURL: r.HTTP.URL, Status: r.HTTP.Status,
			RemoteIP: r.HTTP.RemoteIP, UserAgent: r.HTTP.UserAgent,
		}
		if r.HTTP.Latency > 0 {
			e.HTTPRequest.Latency = strconv.FormatFloat(r.HTTP.Latency.Seconds(), 'f', -1, 64) + "s"
		}
		switch {
		case r.HTTP.Status >= 500:
			e.Severity = "ERROR"
		case r.HTTP.Status >= 400:
			e.Severity = "WARNING"
		default:
			e.Severity = "INFO"
		}
		e.TextPayload = r.Text // why the gateway refused it
		return e
	}
	e.LogName = logName(project, LogStdout)
	if r.Stderr {
		e.LogName = logName(project, LogStderr)
	}
	if r.Instance != "" {
		e.Labels = map[string]string{"instanceId": r.Instance}
	}
	structured(&e, r.Text)
	return e
}

// jobEntry turns a stored line of a job's task into a LogEntry, as Cloud
// Run writes one: resource cloud_run_job, the execution, task index and
// attempt as labels.
func jobEntry(project, region, job, id string, received time.Time, r record) Entry {
	e := Entry{
		Resource:         Resource{Type: ResourceJob, Labels: map[string]string{"project_id": project, "location": region, "job_name": job}},
		Timestamp:        r.Time,
		ReceiveTimestamp: received,
		InsertID:         id,
		Severity:         "DEFAULT",
		LogName:          logName(project, LogStdout),
		Labels: map[string]string{
			"run.googleapis.com/execution_name": r.Revision,
			"run.googleapis.com/task_index":     r.Instance,
			"run.googleapis.com/task_attempt":   strconv.Itoa(r.Attempt),
		},
	}
	if e.ReceiveTimestamp.IsZero() {
		e.ReceiveTimestamp = r.Time
	}
	if r.Stderr {
		e.LogName = logName(project, LogStderr)
	}
	structured(&e, r.Text)
	return e
}

// structured makes a line that is a JSON object the entry's jsonPayload, its
// "severity" the entry's, as Cloud Run does for structured logging; any
// other line is the textPayload.
func structured(e *Entry, text string) {
	if strings.HasPrefix(text, "{") {
		var obj map[string]any
		if json.Unmarshal([]byte(text), &obj) == nil {
			if s, ok := obj["severity"].(string); ok && isSeverity(strings.ToUpper(s)) {
				e.Severity = strings.ToUpper(s)
				delete(obj, "severity")
			}
			e.JSONPayload = obj
			return
		}
	}
	e.TextPayload = text
}

func isSeverity(s string) bool {
	for _, v := range logfilter.Severities {
		if v == s {
			return true
		}
	}
	return false
}

// methodNames are Google's method names for the audit trail's kinds.
var methodNames = map[string]string{
	audit.KindServiceCreate:           "google.cloud.run.v1.Services.CreateService",
	audit.KindServiceReplace:          "google.cloud.run.v1.Services.ReplaceService",
	audit.KindServiceDelete:           "google.cloud.run.v1.Services.DeleteService",
	audit.KindRevisionDelete:          "google.cloud.run.v1.Revisions.DeleteRevision",
	audit.KindSetIamPolicy:            "SetIamPolicy",
	audit.KindServiceAccountCreate:    "google.iam.admin.v1.CreateServiceAccount",
	audit.KindServiceAccountDelete:    "google.iam.admin.v1.DeleteServiceAccount",
	audit.KindServiceAccountKeyCreate: "google.iam.admin.v1.CreateServiceAccountKey",
	audit.KindServiceAccountKeyDelete: "google.iam.admin.v1.DeleteServiceAccountKey",
	audit.KindRoleCreate:              "google.iam.admin.v1.CreateRole",
	audit.KindRoleUpdate:              "google.iam.admin.v1.UpdateRole",
	audit.KindRoleDelete:              "google.iam.admin.v1.DeleteRole",
}

// activityEntry turns an admin record of the audit trail into Cloud Audit
// Logs' admin activity entry.
func activityEntry(r audit.Record) Entry {
	e := Entry{
		LogName:          logName(r.Project, LogActivity),
		Timestamp:        r.Time,
		ReceiveTimestamp: r.Time,
		Severity:         "NOTICE",
		InsertID:         r.ID,
		Resource:         Resource{Type: "project", Labels: map[string]string{"project_id": r.Project}},
	}
	serviceName := "usher"
	switch noun, _, _ := strings.Cut(r.Kind, "."); noun {
	case "service", "revision":
		serviceName = "run.googleapis.com"
	case "serviceAccount", "serviceAccountKey", "role":
		serviceName = "iam.googleapis.com"
	case "iam":
		serviceName = "cloudresourcemanager.googleapis.com"
	}
	if r.Service != "" {
		revision := ""
		if r.Details != nil {
			revision = r.Details.Revision
		}
		e.Resource = revisionResource(r.Project, r.Region, r.Service, revision)
		serviceName = "run.googleapis.com"
	}
	method := methodNames[r.Kind]
	if method == "" {
		method = "usher." + r.Kind
	}
	payload := map[string]any{
		"@type":        "type.googleapis.com/google.cloud.audit.AuditLog",
		"serviceName":  serviceName,
		"methodName":   method,
		"resourceName": r.Resource,
		"status":       map[string]any{},
	}
	if email, ok := strings.CutPrefix(r.Principal, "user:"); ok {
		payload["authenticationInfo"] = map[string]any{"principalEmail": email}
	} else if email, ok := strings.CutPrefix(r.Principal, "serviceAccount:"); ok {
		payload["authenticationInfo"] = map[string]any{"principalEmail": email}
	}
	if r.Permission != "" {
		payload["authorizationInfo"] = []any{map[string]any{"resource": r.Resource, "permission": r.Permission, "granted": true}}
	}
	if d := r.Details; d != nil {
		if len(d.BindingDeltas) > 0 {
			payload["serviceData"] = map[string]any{"policyDelta": map[string]any{"bindingDeltas": d.BindingDeltas}}
		}
		if d.Impersonator != "" {
			payload["requestMetadata"] = map[string]any{"callerSuppliedUserAgent": "usher console (impersonated by " + d.Impersonator + ")"}
		}
	}
	payload["metadata"] = map[string]any{"usherKind": r.Kind}
	e.ProtoPayload = payload
	return e
}
