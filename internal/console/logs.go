package console

import "time"

// DenialLog is a record of requests the gateway refused, for the Logs tab. A
// server that keeps none passes no DenialLog, and the tab says so.
type DenialLog interface {
	// Denials returns up to max of the service's most recently refused
	// requests, newest first.
	Denials(project, region, service string, max int) []Denial
}

// Denial is one refused request, with the gateway's reason.
type Denial struct {
	Time      time.Time
	Status    int
	Principal string // "" for a caller without credentials
	Reason    string
}

// LogLine is one line an instance printed, as the admin API's
// services/NAME:logs method returns it.
type LogLine struct {
	Time     time.Time `json:"timestamp"`
	Revision string    `json:"revision"`
	Instance string    `json:"instance"`
	Text     string    `json:"textPayload"`
}
