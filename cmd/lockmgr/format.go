package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/gormlock/lockmgr"
)

// rule is django-lockmgr's 57-character separator line.
var rule = strings.Repeat("=", 57)

// lockLine formats l as django-lockmgr's list_locks does:
// <Lock name='a' locked_by='h' lock_process='42' locked_until='2019-11-22 02:01:55.439390+00:00'>,
// with 'None' for a missing process id and for a lock that never expires.
func lockLine(l *lockmgr.Lock) string {
	return fmt.Sprintf("<Lock name='%s' locked_by='%s' lock_process='%s' locked_until='%s'>",
		l.Name, l.LockedBy, processText(l.LockProcess), lockmgr.FormatTime(l.LockedUntil))
}

// processText is a lock's process id as Python prints it.
func processText(pid *int64) string {
	if pid == nil {
		return "None"
	}
	return strconv.FormatInt(*pid, 10)
}

// leftText says how long l has left: "expires in 9m59s", "never expires"
// or "expired".
func leftText(l *lockmgr.Lock) string { return leftTextAt(l, time.Now()) }

// leftTextAt is leftText by the clock reading now (the database's, where
// the caller has it).
func leftTextAt(l *lockmgr.Lock, now time.Time) string {
	if l.LockedUntil == nil {
		return "never expires"
	}
	switch d := l.LockedUntil.Sub(now); {
	case d <= 0:
		return "expired"
	case d < time.Second:
		return "expires in <1s"
	default:
		return "expires in " + d.Round(time.Second).String()
	}
}

// holderText names who holds l, for one-line messages:
// "web1 (pid 4242) until 2025-06-01 12:00:00+00:00 (expires in 9m59s)".
func holderText(l *lockmgr.Lock) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%q", l.LockedBy)
	if l.LockProcess != nil {
		fmt.Fprintf(&b, " (pid %d)", *l.LockProcess)
	}
	if l.LockedUntil != nil {
		fmt.Fprintf(&b, " until %s", lockmgr.FormatTime(l.LockedUntil))
	}
	return b.String() + " (" + leftText(l) + ")"
}

// heldText says how long l has been held at now, its fence and when it
// was taken: "taken 2025-06-01 12:00:00+00:00, held 5s, fence 7".
func heldText(l *lockmgr.Lock, now time.Time) string {
	return fmt.Sprintf("taken %s, held %s, fence %d", lockmgr.FormatTime(&l.CreatedAt), roundDur(now.Sub(l.CreatedAt)), l.Fence)
}

// roundDur is d to the second, "<1s" below one, "0s" when negative (a
// client clock a little ahead).
func roundDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < time.Second:
		return "<1s"
	}
	return d.Round(time.Second).String()
}

// lockJSON is the --json form of a lock. The owner token is left out: it
// is what lets a holder release its lock.
type lockJSON struct {
	Name           string     `json:"name"`
	LockedBy       string     `json:"locked_by"`
	LockProcess    *int64     `json:"lock_process"`
	LockedUntil    *time.Time `json:"locked_until"`
	ExpiresSeconds *int64     `json:"expires_seconds"`
	Fence          int64      `json:"fence"`
	CreatedAt      time.Time  `json:"created_at"`
	UpdatedAt      time.Time  `json:"updated_at"`
	HeldSeconds    int64      `json:"held_seconds"`
}

// newLockJSON converts l; nil gives nil.
func newLockJSON(l *lockmgr.Lock) *lockJSON { return newLockJSONAt(l, time.Now()) }

// newLockJSONAt converts l, judging its time left and held by now.
func newLockJSONAt(l *lockmgr.Lock, now time.Time) *lockJSON {
	if l == nil {
		return nil
	}
	v := &lockJSON{
		Name:        l.Name,
		LockedBy:    l.LockedBy,
		LockProcess: l.LockProcess,
		Fence:       l.Fence,
		CreatedAt:   l.CreatedAt.UTC(),
		UpdatedAt:   l.UpdatedAt.UTC(),
		HeldSeconds: max(int64(now.Sub(l.CreatedAt)/time.Second), 0),
	}
	if l.LockedUntil != nil {
		u := l.LockedUntil.UTC()
		v.LockedUntil = &u
	}
	if l.LockedUntil != nil {
		secs := int64(l.LockedUntil.Sub(now) / time.Second)
		v.ExpiresSeconds = &secs
	}
	return v
}

// writeJSON writes v as one line of JSON.
func writeJSON(w io.Writer, v any) error {
	return json.NewEncoder(w).Encode(v)
}

// plural is "1 lock" or "2 locks".
func plural(n int64, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.FormatInt(n, 10) + " " + word + "s"
}
