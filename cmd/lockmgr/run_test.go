package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// loopScript prints "ready", then idles; on SIGTERM it runs onTerm.
func loopScript(onTerm string) string {
	return `trap '` + onTerm + `' TERM; echo ready; while :; do sleep 0.1; done`
}

func TestRunPassesStreamsAndStatus(t *testing.T) {
	eachDB(t, func(t *testing.T, c *cli) {
		r := c.runIn("hello\n", "run", "job", "--", "sh", "-c", `read line; echo "got $line"; echo oops >&2; exit 7`)
		assert.Equal(t, 7, r.code)
		assert.Equal(t, "got hello\n", r.stdout)
		assert.Equal(t, "oops\n", r.stderr)

		// The command runs while the lock is held, under this host's name.
		host, err := os.Hostname()
		require.NoError(t, err)
		r = c.run("run", "job", "-t", "90s", "--", binPath, "list", "--json")
		require.Equal(t, 0, r.code, r.stderr)
		var inside listJSON
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &inside))
		require.Len(t, inside.Locks, 1)
		assert.Equal(t, "job", inside.Locks[0].Name)
		assert.Equal(t, host, inside.Locks[0].LockedBy)
		assert.InDelta(t, 89, *inside.Locks[0].ExpiresSeconds, 10)

		assert.Empty(t, c.listJSON(), "released when the command exits")

		r = c.run("run", "job", "--", "sh", "-c", "kill -KILL $$")
		assert.Equal(t, 128+9, r.code, "killed by SIGKILL")
		assert.Empty(t, c.listJSON())
	})
}

func TestRunHeld(t *testing.T) {
	eachDB(t, func(t *testing.T, c *cli) {
		c.ok("set", "job", "--locked-by", "other-host", "--process-id", "99", "-t", "300")
		marker := filepath.Join(c.dir, "ran")

		r := c.run("run", "job", "--", "touch", marker)
		assert.Equal(t, 75, r.code)
		assert.Empty(t, r.stdout)
		assert.Regexp(t, `^lockmgr: lock 'job' is held by "other-host" \(pid 99\) until `+untilRE+` \(expires in (4m\d\ds|5m0s)\); not running touch\n$`, r.stderr)
		assert.NoFileExists(t, marker)

		start := time.Now()
		r = c.run("run", "job", "--wait", "1.5", "--json", "--", "touch", marker)
		assert.Equal(t, 75, r.code)
		assert.GreaterOrEqual(t, time.Since(start), 1500*time.Millisecond, "waited")
		var ev runEvent
		require.NoError(t, json.Unmarshal([]byte(r.stderr), &ev), r.stderr)
		assert.Equal(t, "locked", ev.Event)
		assert.Equal(t, 75, *ev.ExitCode)
		require.NotNil(t, ev.Lock)
		assert.Equal(t, "other-host", ev.Lock.LockedBy)
		assert.Contains(t, ev.Message, `lock 'job' is still held after 1.5s by "other-host"`)
		assert.NoFileExists(t, marker)
		assert.Equal(t, "other-host", c.listJSON()["job"].LockedBy, "the holder keeps its lock")
	})
}

func TestRunTwoProcesses(t *testing.T) {
	eachDB(t, func(t *testing.T, c *cli) {
		a := c.start("run", "job", "--", "sh", "-c", `echo started; sleep 2; echo a >> order`)
		a.waitLine("started")

		r := c.run("run", "job", "--", "sh", "-c", "echo b >> order")
		assert.Equal(t, 75, r.code, r.stderr)
		assert.Contains(t, r.stderr, "lockmgr: lock 'job' is held by ")

		r = c.run("run", "job", "-w", "30s", "--", "sh", "-c", "echo c >> order")
		assert.Equal(t, 0, r.code, r.stderr)
		assert.Equal(t, 0, a.wait(30*time.Second))
		order, err := os.ReadFile(filepath.Join(c.dir, "order"))
		require.NoError(t, err)
		assert.Equal(t, "a\nc\n", string(order), "the waiter ran after the holder, the other not at all")
		assert.Empty(t, c.listJSON())
	})
}

func TestRunForwardsSignals(t *testing.T) {
	eachDB(t, func(t *testing.T, c *cli) {
		p := c.start("run", "job", "--", "sh", "-c", loopScript("echo got-term; exit 42"))
		p.waitLine("ready")
		require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
		assert.Equal(t, 42, p.wait(20*time.Second))
		assert.Contains(t, p.stdout(), "got-term")
		assert.NotContains(t, p.stderr.String(), "lockmgr:", "(sh may say its sleep was Terminated)")
		assert.Empty(t, c.listJSON(), "released after the command exits")

		p = c.start("run", "job", "--", "sh", "-c", "echo ready; exec sleep 30")
		p.waitLine("ready")
		require.NoError(t, p.cmd.Process.Signal(syscall.SIGINT))
		assert.Equal(t, 128+2, p.wait(20*time.Second), "sleep killed by the forwarded SIGINT")
		assert.Empty(t, c.listJSON())
	})
}

func TestRunLockLost(t *testing.T) {
	eachDB(t, func(t *testing.T, c *cli) {
		// The command ignores SIGTERM (its sleeps die, the loop goes on), so
		// lockmgr must SIGKILL it after --kill-after.
		p := c.start("run", "job", "-t", "2s", "--kill-after", "1s", "--json", "--", "sh", "-c", loopScript("echo term"))
		p.waitLine("ready")
		c.ok("clear", "job")
		c.ok("set", "job", "--locked-by", "thief", "-t", "60")

		assert.Equal(t, 76, p.wait(30*time.Second))
		assert.Contains(t, p.stdout(), "term", "the command got SIGTERM")
		var events []runEvent
		for _, line := range strings.Split(strings.TrimSpace(p.stderr.String()), "\n") {
			if !strings.HasPrefix(line, "{") {
				continue // sh reporting its sleeps Terminated
			}
			var ev runEvent
			require.NoError(t, json.Unmarshal([]byte(line), &ev), line)
			events = append(events, ev)
		}
		require.Len(t, events, 3, p.stderr.String())
		assert.Equal(t, "acquired", events[0].Event)
		assert.Equal(t, "lost", events[1].Event)
		assert.Contains(t, events[1].Message, "lock 'job' was lost while sh was running")
		assert.Equal(t, "exited", events[2].Event)
		assert.Equal(t, 76, *events[2].ExitCode)
		assert.Equal(t, 128+9, *events[2].CommandExitCode, "SIGKILLed after --kill-after")
		assert.Equal(t, "thief", c.listJSON()["job"].LockedBy, "the new holder keeps the lock")
	})
}

func TestRunCommandNotFound(t *testing.T) {
	eachDB(t, func(t *testing.T, c *cli) {
		r := c.run("run", "job", "--", "./no-such-command")
		assert.Equal(t, 127, r.code)
		assert.True(t, strings.HasPrefix(r.stderr, "lockmgr: cannot run ./no-such-command: "), r.stderr)
		assert.Empty(t, c.listJSON())

		r = c.run("run", "job", "--json", "--", "./no-such-command")
		assert.Equal(t, 127, r.code)
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		require.Len(t, lines, 3, r.stderr)
		var ev runEvent
		require.NoError(t, json.Unmarshal([]byte(lines[1]), &ev))
		assert.Equal(t, "error", ev.Event)
		assert.Contains(t, ev.Message, "cannot run ./no-such-command: ")
		var exited runEvent
		require.NoError(t, json.Unmarshal([]byte(lines[2]), &exited))
		assert.Equal(t, runEvent{Event: "exited", Name: "job", ExitCode: exited.ExitCode}, exited, "no command_exit_code")
		assert.Equal(t, 127, *exited.ExitCode)
	})
}

func TestRunInTerminal(t *testing.T) {
	script, err := exec.LookPath("script")
	if err != nil {
		t.Skip("needs script(1) from util-linux for a terminal")
	}
	t.Parallel()
	// Terminal handling does not depend on the database: SQLite only.
	c := newCLI(t, testDB{"sqlite", "sqlite://" + t.TempDir() + "/locks.db"})
	c.ok("migrate")

	// In a terminal, ^C reaches the command once: from the terminal, not a
	// second time from lockmgr. script(1) starts $SHELL -c; exec makes
	// lockmgr the terminal's foreground process whatever that shell is (dash
	// waiting in front of it would itself die of the ^C, with status 130).
	cmdline := "exec " + binPath + ` run job -- sh -c 'n=0; trap "n=\$((n+1)); echo int \$n" INT; echo ready; ` +
		`i=0; while [ $i -lt 30 ]; do sleep 0.1; i=$((i+1)); done; echo total $n; exit 3'`
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, script, "-qec", cmdline, "/dev/null")
	cmd.Env, cmd.Dir = append(c.env(), "SHELL=/bin/sh"), c.dir
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	defer func() { _ = stdin.Close() }()
	p := &proc{t: t, cmd: cmd, lines: make(chan string, 100), done: make(chan struct{})}
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	go p.read(stdout)
	p.waitLine("ready")
	_, err = stdin.Write([]byte{3})
	require.NoError(t, err)
	assert.Equal(t, 3, p.wait(30*time.Second), p.stdout())
	assert.Contains(t, p.stdout(), "int 1")
	assert.Contains(t, p.stdout(), "total 1", "one SIGINT, not two")
	assert.Empty(t, c.listJSON())
}

func TestRunInterruptedWhileWaiting(t *testing.T) {
	eachDB(t, func(t *testing.T, c *cli) {
		c.ok("set", "job", "--locked-by", "other-host", "-t", "300")
		p := c.start("run", "job", "-w", "60s", "--", "sh", "-c", "echo ran")
		time.Sleep(time.Second) // started and waiting: nothing shows it, so allow plenty
		require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
		assert.Equal(t, 128+15, p.wait(20*time.Second))
		assert.Empty(t, p.stdout(), "the command did not run")
		assert.Equal(t, "lockmgr: got SIGTERM while waiting for lock 'job'; sh not run\n", p.stderr.String())
		assert.Equal(t, "other-host", c.listJSON()["job"].LockedBy)
	})
}
