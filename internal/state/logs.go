package state

import (
	"fmt"
	"time"
)

// LogsPrefix holds services' log entries (package logentries): what
// instances printed and the requests the gateway answered, in batches.
// Each stream of a service has its own bound: LogStreamPrefix(P, R, S,
// STREAM) + NANOS-UNIQUE, NANOS the zero-padded Unix time in nanoseconds of
// the batch's oldest entry, so a stream's keys sort oldest first.
const LogsPrefix = "logs/"

// Log streams.
const (
	LogStreamOutput   = "output"
	LogStreamRequests = "requests"
	// LogStreamJobOutput is a job's tasks' output: LogStreamPrefix(P, R,
	// JOB, LogStreamJobOutput) (a job may share a service's name).
	LogStreamJobOutput = "joboutput"
)

// LogProjectPrefix holds one project's log batches.
func LogProjectPrefix(project string) string { return LogsPrefix + project + "/" }

// LogServicePrefix holds one service's log batches.
func LogServicePrefix(project, region, service string) string {
	return LogProjectPrefix(project) + region + "/" + service + "/"
}

// LogStreamPrefix holds one stream of one service's log batches.
func LogStreamPrefix(project, region, service, stream string) string {
	return LogServicePrefix(project, region, service) + stream + "/"
}

// LogKey names a batch of a stream whose oldest entry is at t; unique tells
// apart batches written at the same nanosecond (by different nodes).
func LogKey(streamPrefix string, t time.Time, unique string) string {
	return streamPrefix + fmt.Sprintf("%019d", t.UnixNano()) + "-" + unique
}
