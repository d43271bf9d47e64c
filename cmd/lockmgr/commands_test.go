package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// untilRE matches a locked_until as list prints it.
const untilRE = `\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{6})?\+00:00`

func TestMigrateAndMissingTable(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "locks.db")
	require.NoError(t, os.WriteFile(path, nil, 0o600)) // an empty file is an empty SQLite database
	c := newCLI(t, testDB{"sqlite", "sqlite://" + path})
	r := c.run("list")
	assert.Equal(t, 1, r.code)
	assert.Empty(t, r.stdout)
	assert.Equal(t, fmt.Sprintf("lockmgr: %s: lock table not usable: table %q does not exist; create it with `lockmgr migrate` "+
		"(or Manager.AutoMigrate, db.Use(lockmgr.NewPlugin()), db.AutoMigrate(&lockmgr.Lock{}))\n", c.db.dsn, c.table), r.stderr)

	want := fmt.Sprintf("Table %q is ready in %s.\n", c.table, c.db.dsn)
	assert.Equal(t, want, c.ok("migrate"))
	assert.Equal(t, want, c.ok("migrate"), "migrating again changes nothing")
	assert.Equal(t, fmt.Sprintf("There are currently 0 active locks using table %q\n%s\n%s\n", c.table, rule, rule), c.ok("list"))
}

// TestMissingSQLiteFile: only migrate creates a SQLite database; every
// other command refuses a file that does not exist, and creates none.
func TestMissingSQLiteFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "typo.db")
	for _, dsn := range []string{path, "sqlite://" + path, "file:" + path + "?_busy_timeout=100"} {
		c := &cli{t: t, db: testDB{"sqlite", dsn}, table: "locks", dir: dir}
		for _, args := range [][]string{{"list"}, {"list", "--json"}, {"clear", "a"}, {"clean"}, {"reset", "-f"},
			{"set", "a"}, {"set", "-r", "a"}, {"run", "a", "--", "true"}} {
			r := c.run(args...)
			assert.Equal(t, 1, r.code, "%s %q: %s", dsn, args, r.stderr)
			assert.Empty(t, r.stdout)
			assert.Regexp(t, `^lockmgr: cannot connect to sqlite://\S*typo.db: the database file does not exist; 'lockmgr migrate' creates it\n$`, r.stderr, args)
			assert.NoFileExists(t, path, "%s %q", dsn, args)
		}
		// The default DSN, in the working directory, too.
		r := (&cli{t: t, db: testDB{"sqlite", ""}, table: "locks", dir: dir}).run("--dsn", "", "list")
		assert.Equal(t, "lockmgr: cannot connect to sqlite://lockmgr.db: the database file does not exist; 'lockmgr migrate' creates it\n", r.stderr)
		assert.NoFileExists(t, filepath.Join(dir, "lockmgr.db"))
	}

	c := &cli{t: t, db: testDB{"sqlite", path}, table: "locks", dir: dir}
	assert.Equal(t, "Table \"locks\" is ready in sqlite://"+path+".\n", c.ok("migrate"))
	assert.FileExists(t, path)
	assert.Empty(t, c.listJSON())
}

// TestQueryErrorIsNamed: when the table check's query fails, the CLI says
// why, not that the table is missing.
func TestQueryErrorIsNamed(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "not-a-database.db")
	require.NoError(t, os.WriteFile(path, []byte(strings.Repeat("this is not SQLite\n", 100)), 0o600))
	c := &cli{t: t, db: testDB{"sqlite", "sqlite://" + path}, table: "locks", dir: t.TempDir()}
	r := c.run("list")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "file is not a database")
	assert.NotContains(t, r.stderr, "does not exist")

	dsn := os.Getenv("LOCKMGR_TEST_POSTGRES_DSN")
	if dsn == "" {
		return
	}
	// Every statement times out: a query fails on a working connection.
	u := strings.Replace(dsn, "postgres://postgres@", "postgres://postgres:s3cr3t-pw@", 1) + "&statement_timeout=1"
	c = &cli{t: t, db: testDB{"postgres", u}, table: "lockmgr_cli_never_created", dir: t.TempDir()}
	r = c.run("list")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "statement timeout")
	assert.NotContains(t, r.stderr, "s3cr3t-pw")
}

func TestSetAndList(t *testing.T) {
	eachDB(t, func(t *testing.T, c *cli) {
		out := c.ok("set", "b", "a", "-t", "60", "--locked-by", "ops", "--process-id", "4242")
		assert.Contains(t, out, "Finished creating / renewing 2 locks.\n")
		assert.Contains(t, out, "====================Status Report========================\n")
		assert.Regexp(t, `(?m)^    Name +Was Locked\? +Now Locked\? +Status +Expires$`, out)
		assert.Regexp(t, `(?m)^    b +NO +YES +create +in (59s|1m0s)$`, out)
		assert.Regexp(t, `(?m)^    a +NO +YES +create +in (59s|1m0s)$`, out)
		assert.Contains(t, out, "    Locks Created:      2\n    Locks Renewed:      0\n    Renewals Skipped:   0\n    Creations Skipped:  0\n")

		lines := strings.Split(c.ok("list"), "\n")
		require.Len(t, lines, 6, "header, rule, a, b, rule, empty")
		assert.Equal(t, fmt.Sprintf("There are currently 2 active locks using table %q", c.table), lines[0])
		assert.Equal(t, strings.Repeat("=", 57), lines[1])
		assert.Regexp(t, `^<Lock name='a' locked_by='ops' lock_process='4242' locked_until='`+untilRE+`'>  \(expires in (59s|1m0s); taken `+untilRE+`, held (<1s|\d+s), fence \d+\)$`, lines[2])
		assert.Regexp(t, `^<Lock name='b' locked_by='ops' lock_process='4242' locked_until='`+untilRE+`'>  \(expires in (59s|1m0s); taken `+untilRE+`, held (<1s|\d+s), fence \d+\)$`, lines[3])
		assert.Equal(t, lines[1], lines[4])

		locks := c.listJSON()
		require.Contains(t, locks, "a")
		a := locks["a"]
		assert.Equal(t, "ops", a.LockedBy)
		require.NotNil(t, a.LockProcess)
		assert.EqualValues(t, 4242, *a.LockProcess)
		require.NotNil(t, a.LockedUntil)
		assert.WithinDuration(t, time.Now().Add(time.Minute), *a.LockedUntil, 20*time.Second)
		require.NotNil(t, a.ExpiresSeconds)
		assert.InDelta(t, 59, *a.ExpiresSeconds, 10)
	})
}

func TestSetRenewAndSkip(t *testing.T) {
	eachDB(t, func(t *testing.T, c *cli) {
		c.ok("set", "held", "-t", "60")

		out := c.ok("set", "held", "-t", "10m")
		assert.Regexp(t, `(?m)^    held +YES +YES +extend +in (9m59s|10m0s)$`, out)
		assert.Contains(t, out, "    Locks Created:      0\n    Locks Renewed:      1\n")
		assert.Greater(t, *c.listJSON()["held"].ExpiresSeconds, int64(500))

		out = c.ok("set", "held", "-t", "30", "--json")
		var res setJSON
		require.NoError(t, json.Unmarshal([]byte(out), &res))
		assert.Equal(t, []setStatusJSON{{Name: "held", WasLocked: true, Locked: true, Status: "extend"}}, res.Statuses)
		require.Len(t, res.Locks, 1)
		assert.Greater(t, *res.Locks[0].ExpiresSeconds, int64(500), "renewing never shortens")

		out = c.ok("set", "held", "free", "-n")
		assert.Regexp(t, `(?m)^    held +YES +YES +skip `, out)
		assert.Regexp(t, `(?m)^    free +NO +YES +create `, out)
		assert.Contains(t, out, "    Locks Created:      1\n    Locks Renewed:      0\n    Renewals Skipped:   1\n    Creations Skipped:  0\n")

		out = c.ok("set", "absent", "held", "-r")
		assert.Regexp(t, `(?m)^    absent +NO +NO +skip +-$`, out)
		assert.Contains(t, out, "    Locks Created:      0\n    Locks Renewed:      1\n    Renewals Skipped:   0\n    Creations Skipped:  1\n")
		assert.NotContains(t, c.listJSON(), "absent")
	})
}

func TestSetNoTimeout(t *testing.T) {
	eachDB(t, func(t *testing.T, c *cli) {
		out := c.ok("set", "forever", "-k", "-t", "5")
		assert.Regexp(t, `(?m)^    forever +NO +YES +create +never$`, out)
		assert.Regexp(t, `(?m)^<Lock name='forever' locked_by='[^']*' lock_process='None' locked_until='None'>  \(never expires; taken `+untilRE+`, held (<1s|\d+s), fence \d+\)$`, c.ok("list"))
		l := c.listJSON()["forever"]
		assert.Nil(t, l.LockedUntil)
		assert.Nil(t, l.ExpiresSeconds)
		host, err := os.Hostname()
		require.NoError(t, err)
		assert.Equal(t, host, l.LockedBy)
	})
}

func TestSetFailRollsBack(t *testing.T) {
	eachDB(t, func(t *testing.T, c *cli) {
		c.ok("set", "held", "--locked-by", "holder-host", "--process-id", "77", "-t", "300")

		r := c.run("set", "-e", "new1", "held", "new2")
		assert.Equal(t, 2, r.code)
		assert.Empty(t, r.stdout)
		assert.Regexp(t, `^lockmgr: set --fail: lock 'held' is held by "holder-host" \(pid 77\) until `+untilRE+` \(expires in (4m\d\ds|5m0s)\); nothing was changed\n$`, r.stderr)
		locks := c.listJSON()
		assert.Len(t, locks, 1, "new1 was rolled back")
		assert.Contains(t, locks, "held")

		r = c.run("set", "--fail", "--json", "new1", "held")
		assert.Equal(t, 2, r.code)
		var out struct {
			Error string   `json:"error"`
			Lock  lockJSON `json:"lock"`
		}
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &out))
		assert.Equal(t, "locked", out.Error)
		assert.Equal(t, "holder-host", out.Lock.LockedBy)
		assert.Len(t, c.listJSON(), 1)

		out2 := c.ok("set", "-e", "new1", "new2")
		assert.Contains(t, out2, "    Locks Created:      2\n")
	})
}

func TestClear(t *testing.T) {
	eachDB(t, func(t *testing.T, c *cli) {
		c.ok("set", "a", "b")
		assert.Equal(t, "Releasing lock a...\nLock a has been removed (if it exists).\n"+
			"Releasing lock missing...\nLock missing has been removed (if it exists).\n", c.ok("clear", "a", "missing"))
		locks := c.listJSON()
		assert.Len(t, locks, 1)
		assert.Contains(t, locks, "b")
	})
}

func TestReset(t *testing.T) {
	eachDB(t, func(t *testing.T, c *cli) {
		c.ok("set", "a", "b")
		for _, answer := range []string{"no\n", "yes\n", "YES please\n", ""} {
			r := c.runIn(answer, "reset")
			assert.Equal(t, 1, r.code, "answer %q", answer)
			assert.Regexp(t, `(?m)^The following 2 active locks would be removed \(expired rows go too\):$`, r.stdout)
			assert.Regexp(t, `(?m)^<Lock name='a' `, r.stdout)
			assert.True(t, strings.HasPrefix(r.stderr, "Are you SURE you want to clear all locks?\n"+resetPrompt), r.stderr)
			if answer == "" {
				assert.Contains(t, r.stderr, "lockmgr: reset: no answer (end of input); nothing was deleted\n")
			} else {
				assert.Contains(t, r.stderr, "lockmgr: reset: you did not type YES; nothing was deleted\n")
			}
			assert.NotContains(t, r.stdout, "deleted")
			assert.Len(t, c.listJSON(), 2, "answer %q deletes nothing", answer)
		}

		r := c.runIn("YES\n", "reset")
		assert.Equal(t, 0, r.code, r.stderr)
		assert.True(t, strings.HasSuffix(r.stdout, "A total of 2 lock rows were deleted.\n"), r.stdout)
		assert.Empty(t, c.listJSON())

		c.ok("set", "c")
		r = c.run("reset", "-f")
		assert.Equal(t, 0, r.code)
		assert.Empty(t, r.stderr, "no question with -f")
		assert.Contains(t, r.stdout, "A total of 1 lock rows were deleted.\n")
		assert.Empty(t, c.listJSON())
	})
}

func TestClean(t *testing.T) {
	eachDB(t, func(t *testing.T, c *cli) {
		c.ok("set", "short", "-t", "0.5")
		c.ok("set", "long", "-t", "600")
		c.ok("set", "forever", "-k")
		require.Eventually(t, func() bool { return len(c.listJSON()) == 2 }, 15*time.Second, 200*time.Millisecond)
		assert.Equal(t, "Removed 1 expired lock.\n", c.ok("clean"))
		assert.Equal(t, "Removed 0 expired locks.\n", c.ok("clean"))
		assert.Len(t, c.listJSON(), 2)
	})
}

func TestConnectionErrors(t *testing.T) {
	t.Parallel()
	c := newCLI(t, testDB{"sqlite", "sqlite://" + t.TempDir() + "/locks.db"})
	for _, tc := range []struct{ dsn, want string }{
		{"mysql://root:hunter2@127.0.0.1:1/test", "lockmgr: cannot connect to mysql://root@127.0.0.1:1/test: "},
		{"root:hunter2@tcp(127.0.0.1:1)/test", "lockmgr: cannot connect to mysql://root@127.0.0.1:1/test: "},
		{"postgres://postgres:hunter2@127.0.0.1:1/test?sslmode=disable", "lockmgr: cannot connect to postgres://postgres:xxxxx@127.0.0.1:1/test?sslmode=disable: "},
		{"redis://127.0.0.1:6379", `lockmgr: invalid DSN: unknown scheme "redis" (want postgres, mysql or sqlite)`},
		{"mysql://root@127.0.0.1:3306/test?parseTime=maybe", "lockmgr: invalid DSN: "},
		{"/nonexistent-dir/locks.db", "lockmgr: cannot connect to sqlite:///nonexistent-dir/locks.db: "},
	} {
		r := c.run("--dsn", tc.dsn, "list")
		assert.Equal(t, 1, r.code, tc.dsn)
		assert.Empty(t, r.stdout, tc.dsn)
		assert.True(t, strings.HasPrefix(r.stderr, tc.want), "%s: %q", tc.dsn, r.stderr)
		assert.Equal(t, 1, strings.Count(r.stderr, "\n"), "%s: one line: %q", tc.dsn, r.stderr)
		assert.NotContains(t, r.stderr, "hunter2")
		assert.NotContains(t, r.stderr, "Usage")
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	c := newCLI(t, testDB{"sqlite", "sqlite://" + t.TempDir() + "/locks.db"})
	c.ok("migrate") // a bad --table is found once connected: the file must exist
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"set"}, "lockmgr: lockmgr set needs at least one lock NAME\nRun 'lockmgr set --help' for usage.\n"},
		{[]string{"clear"}, "lockmgr: lockmgr clear needs at least one lock NAME\nRun 'lockmgr clear --help' for usage.\n"},
		{[]string{"set", "a", "-t", "soon"}, "Run 'lockmgr set --help' for usage.\n"},
		{[]string{"set", "a", "-t", "-5"}, "is negative"},
		{[]string{"list", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"run", "job"}, "run needs a command to run after --"},
		{[]string{"run", "job", "other", "--", "true"}, "run takes one lock NAME, got 2 before --"},
		{[]string{"run", "-t", "0", "job", "--", "true"}, "--timeout must be more than 0"},
		{[]string{"--table", "bad name", "list"}, `lockmgr: invalid option: table "bad name" must be`},
		{[]string{"set", "ok", ""}, "lockmgr: invalid lock name: empty\n"},
		{[]string{"clear", "a\xffb"}, `lockmgr: invalid lock name: "a\xffb" is not valid UTF-8`},
		{[]string{"run", strings.Repeat("x", 256), "--", "true"}, "lockmgr: invalid lock name: 256 bytes, the limit is 255\n"},
	} {
		r := c.run(tc.args...)
		assert.Equal(t, 64, r.code, "%q: %q", tc.args, r.stderr)
		assert.Contains(t, r.stderr, tc.want, tc.args)
		assert.True(t, strings.HasPrefix(r.stderr, "lockmgr: "), r.stderr)
		assert.NotContains(t, r.stderr, "Flags:", "no usage dump")
	}
}

func TestConnectTimeout(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	go func() { // a server that accepts and never answers
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { _ = conn.Close() })
		}
	}()
	c := newCLI(t, testDB{"sqlite", "sqlite://" + t.TempDir() + "/locks.db"})
	for _, dsn := range []string{"mysql://root@" + ln.Addr().String() + "/test", "postgres://postgres@" + ln.Addr().String() + "/test"} {
		start := time.Now()
		r := c.run("--dsn", dsn, "--connect-timeout", "1", "list")
		assert.Equal(t, 1, r.code)
		assert.Less(t, time.Since(start), 15*time.Second)
		assert.Regexp(t, `^lockmgr: cannot connect to \w+://\w+@127.0.0.1:\d+/test: no answer within 1s \(--connect-timeout\)\n$`, r.stderr)
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	c := newCLI(t, testDB{"sqlite", "sqlite://" + t.TempDir() + "/locks.db"})
	out := c.ok("--help")
	for _, want := range []string{"DATABASE", "EXIT STATUS", "Examples:", "*/5 * * * * lockmgr run nightly-report -- ./report.sh",
		"LOCKMGR_DSN", "--table", "list", "set", "clear", "reset", "clean", "migrate", "run"} {
		assert.Contains(t, out, want)
	}
	for _, cmd := range []string{"list", "set", "clear", "reset", "clean", "migrate", "run"} {
		out := c.ok(cmd, "--help")
		assert.Contains(t, out, "Examples:", cmd)
		assert.Contains(t, out, "Usage:", cmd)
		assert.Regexp(t, regexp.MustCompile(`(?m)^  lockmgr `+cmd), out, cmd)
	}
	assert.Contains(t, c.ok("run", "--help"), "75   NAME is held")
	assert.Contains(t, c.ok("set", "--help"), `"status": "create"`)
}
