package state

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// AuditPrefix holds the audit trail (package audit): one key per written
// batch of records, AUDIT/DAY/NANOS-UNIQUE, where DAY is the UTC date
// (YYYYMMDD) and NANOS the zero-padded Unix time in nanoseconds of the
// batch's oldest record. Keys sort in time order, and a time range is read
// by listing only the days it covers.
const AuditPrefix = "audit/"

// AuditDayPrefix is the prefix of the batches whose oldest record is on t's
// UTC day.
func AuditDayPrefix(t time.Time) string {
	return AuditPrefix + t.UTC().Format("20060102") + "/"
}

// AuditKey names a batch whose oldest record is at t; unique tells apart
// batches written at the same nanosecond (by different nodes).
func AuditKey(t time.Time, unique string) string {
	return AuditDayPrefix(t) + fmt.Sprintf("%019d", t.UnixNano()) + "-" + unique
}

// AuditKeyTime returns the time of an audit key's oldest record.
func AuditKeyTime(key string) (time.Time, bool) {
	parts := SplitKey(key, AuditPrefix, 2)
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
