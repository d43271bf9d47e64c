package reliability

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// tortureMode is LOCKMGR_TORTURE: "" (smoke), "short" (CI) or "long".
func tortureMode() string {
	switch m := os.Getenv("LOCKMGR_TORTURE"); m {
	case "short", "long":
		return m
	default:
		return ""
	}
}

// requireTorture skips fault tests in a plain `go test ./...` run, which
// must stay fast; CI sets LOCKMGR_TORTURE=short.
func requireTorture(t *testing.T) {
	t.Helper()
	if tortureMode() == "" {
		t.Skip("fault test: set LOCKMGR_TORTURE=short (CI does) or long to run it")
	}
}

// tortureDuration is how long the mutual-exclusion harness runs on one
// database. LOCKMGR_TORTURE_DURATION (a Go duration) overrides it.
func tortureDuration() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("LOCKMGR_TORTURE_DURATION")); err == nil && d > 0 {
		return d
	}
	switch tortureMode() {
	case "short":
		return 25 * time.Second
	case "long":
		return 10 * time.Minute
	default:
		return 3 * time.Second
	}
}

var resultsMu sync.Mutex

// report logs one measured result and, when LOCKMGR_RELIABILITY_OUT names
// a file, appends it there as a JSON line, so a long run leaves numbers
// behind for RESULTS.md.
func report(t *testing.T, kind string, fields map[string]any) {
	t.Helper()
	fields["test"] = t.Name()
	fields["kind"] = kind
	fields["mode"] = tortureMode()
	fields["at"] = time.Now().UTC().Format(time.RFC3339)
	line, err := json.Marshal(fields)
	if err != nil {
		t.Errorf("report: %v", err)
		return
	}
	t.Logf("RESULT %s", line)
	path := os.Getenv("LOCKMGR_RELIABILITY_OUT")
	if path == "" {
		return
	}
	resultsMu.Lock()
	defer resultsMu.Unlock()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Errorf("report: %v", err)
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s\n", line)
}
