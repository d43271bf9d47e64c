package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDebugLogsLockStatements: --debug shows the statements of the lock
// calls themselves, not only the table checks around them.
func TestDebugLogsLockStatements(t *testing.T) {
	eachDB(t, func(t *testing.T, c *cli) {
		r := c.run("--debug", "run", "job", "--", "true")
		require.Equal(t, 0, r.code, r.stderr)
		assertLogged(t, r.stderr, c.table, "INSERT", "the acquisition")
		assertLogged(t, r.stderr, c.table, "DELETE", "the release")
		assert.Contains(t, r.stderr, `msg="lockmgr: acquired" name=job`, "lockmgr's own events")

		r = c.run("--debug", "set", "a", "b")
		require.Equal(t, 0, r.code, r.stderr)
		assertLogged(t, r.stderr, c.table, "INSERT", "set")

		r = c.run("--debug", "clear", "a")
		require.Equal(t, 0, r.code, r.stderr)
		assertLogged(t, r.stderr, c.table, "DELETE", "clear")
		assert.Empty(t, c.run("clear", "b").stderr, "nothing without --debug")
	})
}

// logHeader starts each statement GORM's logger prints: its time and
// caller, then "[1.234ms] [rows:1] " and the statement.
var logHeader = regexp.MustCompile(`(?m)^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \S+:\d+\n\[[\d.]+ms\] \[rows:[-\d]+\] `)

// assertLogged checks that stderr shows a statement that contains keyword
// (as a word, in any case) and table.
func assertLogged(t *testing.T, stderr, table, keyword, what string) {
	t.Helper()
	word := regexp.MustCompile(`(?i)\b` + keyword + `\b`)
	parts := logHeader.Split(stderr, -1)
	for _, stmt := range parts[1:] {
		if word.MatchString(stmt) && strings.Contains(stmt, table) {
			return
		}
	}
	t.Errorf("%s: no %s statement on %s in the --debug output (%d statements):\n%s", what, keyword, table, len(parts)-1, stderr)
}
