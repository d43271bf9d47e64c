package main

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gormlock/lockmgr/examples/internal/demotest"
)

func TestQuickstart(t *testing.T) {
	dsn := demotest.SQLite(t)
	first := runQuickstart(t, "-dsn", dsn)
	second := runQuickstart(t, "-dsn", dsn)
	assert.Greater(t, fence(t, second), fence(t, first), "the fence grows from one run to the next")
}

func TestQuickstartOnServers(t *testing.T) {
	for _, s := range demotest.Servers() {
		t.Run(s.Kind, func(t *testing.T) {
			table := demotest.UniqueName("lockmgr_qs_")
			demotest.DropTables(t, s.DSN, table)
			runQuickstart(t, "-dsn", s.DSN, "-table", table)
		})
	}
}

// runQuickstart runs the example and checks that it told the whole story.
func runQuickstart(t *testing.T, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), &out, args))
	s := out.String()
	for _, want := range []string{
		`1. GetLock took "quickstart:report" for 30s.`,
		`2. worker-2 asks for the same name: lockmgr: lock is held: "quickstart:report"`,
		`errors.Is(err, lockmgr.ErrLocked) = true`,
		`3. IsLocked = true; List shows 1 live lock(s):`,
		`<Lock name='quickstart:report' locked_by=`,
		`4. Renew for 2m: it now expires in 2m0s.`,
		`5. Release: IsLocked = false.`,
		`6. Release again: lockmgr: lock not held: "quickstart:report"`,
		`errors.Is(err, lockmgr.ErrNotHeld) = true`,
		`7. Do holds "quickstart:report"`,
		`After Do returned: IsLocked = false.`,
	} {
		assert.Contains(t, s, want)
	}
	if t.Failed() {
		t.Logf("output:\n%s", s)
	}
	return s
}

var fenceRE = regexp.MustCompile(`fence=(\d+)`)

func fence(t *testing.T, out string) int64 {
	t.Helper()
	m := fenceRE.FindStringSubmatch(out)
	require.NotNil(t, m, "no fence in:\n%s", out)
	f, err := strconv.ParseInt(m[1], 10, 64)
	require.NoError(t, err)
	return f
}
