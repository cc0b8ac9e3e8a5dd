package state

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The audit trail (package audit) lives under three prefixes with their own
// retention, so that neither a flood of refused requests nor a flood of
// deploys can push out the record of who changed access: changes of who may
// do what (IAM policies, service accounts, roles, org policies,
// impersonation) under AccessPrefix, other admin writes under AuditPrefix,
// refused invocations under DenialsPrefix. Each key holds one written batch of
// records, PREFIX/DAY/NANOS-UNIQUE, where DAY is the UTC date (YYYYMMDD) and
// NANOS the zero-padded Unix time in nanoseconds of the batch's oldest
// record. Keys sort in time order, and a time range is read by listing only
// the days it covers.
const (
	AuditPrefix   = "audit/"
	AccessPrefix  = "auditaccess/"
	DenialsPrefix = "auditdenials/"
)

// AuditDayPrefix is the prefix, under prefix, of the batches whose oldest
// record is on t's UTC day.
func AuditDayPrefix(prefix string, t time.Time) string {
	return prefix + t.UTC().Format("20060102") + "/"
}

// AuditKey names a batch under prefix whose oldest record is at t; unique
// tells apart batches written at the same nanosecond (by different nodes).
func AuditKey(prefix string, t time.Time, unique string) string {
	return AuditDayPrefix(prefix, t) + fmt.Sprintf("%019d", t.UnixNano()) + "-" + unique
}

// AuditKeyTime returns the time of an audit key's oldest record.
func AuditKeyTime(prefix, key string) (time.Time, bool) {
	parts := SplitKey(key, prefix, 2)
	if parts == nil {
		return time.Time{}, false
	}
	nanos, _, ok := strings.Cut(parts[1], "-")
	if !ok {
		return time.Time{}, false
	}
	n, err := strconv.ParseInt(nanos, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(0, n).UTC(), true
}
