package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/gormlock/lockmgr"
	"github.com/spf13/cobra"
)

const runLong = `run takes the lock NAME, runs CMD with its arguments, and releases the lock
when CMD exits: flock(1) for every host that shares the database. CMD gets
lockmgr's stdin, stdout, stderr and environment. lockmgr prints nothing of
its own unless something goes wrong.

While CMD runs, lockmgr renews the lock every third of --timeout, so CMD
may run for as long as it needs. --timeout is how long the lock outlives a
lockmgr that dies without releasing it (killed with SIGKILL, host lost).

If NAME is held by someone else, run waits up to --wait for it (default:
not at all), then gives up with status 75 and one line on stderr:
  lockmgr: lock 'NAME' is held by "web1" (pid 4242) until ... (expires in 9m12s); not running CMD
With --wait, it says "is still held after 30s by".

SIGNALS
  SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to lockmgr are passed on to CMD,
  and lockmgr keeps the lock until CMD has exited. Without a terminal (cron,
  systemd, CI), CMD runs in its own process group and signals go to the
  whole group, so the programs a script starts get them too. In a terminal,
  CMD stays in the foreground with lockmgr: the keys that send SIGINT and
  SIGQUIT reach CMD directly, and lockmgr does not send them twice.
  SIGKILL cannot be passed on: if lockmgr is killed with it, CMD runs on
  unwatched and the lock expires --timeout after its last renewal.

LOCK LOST
  If renewing finds the lock gone -- cleared, reset, or taken by another
  holder after the database was unreachable for longer than --timeout --
  lockmgr sends CMD SIGTERM, then SIGKILL after --kill-after if it is
  still running, and exits with status 76.

EXIT STATUS
  CMD's own status, or 128+N if CMD was killed by signal N.
  1    bad DSN, database unreachable, table missing
  75   NAME is held and no --wait is left (EX_TEMPFAIL)
  76   the lock was lost while CMD ran; CMD was sent SIGTERM
  126  CMD could not be started
  127  CMD was not found
  128+N  lockmgr got signal N while waiting for the lock; CMD did not run

JSON OUTPUT
  With --json, lockmgr's own messages are JSON objects on stderr, one per
  line, instead of text (stdout stays CMD's):
    {"event": "acquired", "name": "NAME", "lock": LOCK}
    {"event": "locked", "name": "NAME", "exit_code": 75, "lock": LOCK, "message": "..."}
    {"event": "lost", "name": "NAME", "message": "..."}
    {"event": "error", "name": "NAME", "message": "cannot run ..."}
    {"event": "exited", "name": "NAME", "exit_code": 0, "command_exit_code": 0}
  "locked" may lack "lock" when the holder let go just as lockmgr looked.
  exit_code is lockmgr's status; command_exit_code is CMD's, absent when
  CMD could not be started. Errors before the lock is tried (DSN, database,
  table, usage) are still plain "lockmgr: " lines.
` + lockJSONDoc

const runExample = `  # From every host's crontab: the report runs on one host at a time
  */5 * * * * lockmgr run nightly-report -- ./report.sh

  # Wait up to a minute for a deploy in progress to finish
  lockmgr run deploy --wait 1m -- ./deploy.sh --env prod

  # In a script: another host running the backup is not a failure
  lockmgr run backup -- ./backup.sh || [ $? -eq 75 ]`

// runOptions are run's flags.
type runOptions struct {
	timeout, wait, killAfter durationFlag
	lockedBy                 string
	asJSON                   bool
}

// runCommand builds "lockmgr run".
func (a *app) runCommand() *cobra.Command {
	o := &runOptions{timeout: durationFlag(600 * time.Second), killAfter: durationFlag(10 * time.Second)}
	cmd := &cobra.Command{
		Use:     "run NAME [flags] -- CMD [ARG...]",
		Short:   "Run a command only while holding a lock",
		Long:    runLong,
		Example: runExample,
		Args:    a.runArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.timeout <= 0 {
				return &usageError{cmdPath: cmd.CommandPath(), err: errors.New("--timeout must be more than 0")}
			}
			if err := validateNames(args[:1]); err != nil {
				return err
			}
			return a.runLocked(cmd.Context(), args[0], args[1:], o)
		},
	}
	f := cmd.Flags()
	f.VarP(&o.timeout, "timeout", "t", "lock expiry, renewed while CMD runs: 90s, 10m, or seconds")
	f.VarP(&o.wait, "wait", "w", "wait this long for a held lock (default: give up at once)")
	f.Var(&o.killAfter, "kill-after", "after the lock is lost, SIGKILL CMD if it is still running this long after SIGTERM")
	f.StringVar(&o.lockedBy, "locked-by", "", "record `S` as who holds the lock (default: this host's name)")
	f.BoolVar(&o.asJSON, "json", false, "write lockmgr's own messages to stderr as JSON (see JSON OUTPUT)")
	return cmd
}

// runArgs wants exactly one NAME, then CMD, usually after "--".
func (a *app) runArgs(cmd *cobra.Command, args []string) error {
	dash := cmd.ArgsLenAtDash()
	switch {
	case len(args) == 0 || dash == 0:
		return &usageError{cmdPath: cmd.CommandPath(), err: errors.New("run needs a lock NAME, then -- and a command")}
	case dash > 1:
		return &usageError{cmdPath: cmd.CommandPath(), err: fmt.Errorf("run takes one lock NAME, got %d before --", dash)}
	case len(args) < 2:
		return &usageError{cmdPath: cmd.CommandPath(), err: errors.New("run needs a command to run after --")}
	}
	return nil
}

// lockOptions turns run's flags into Acquire options.
func (o *runOptions) lockOptions() []lockmgr.LockOption {
	opts := []lockmgr.LockOption{lockmgr.Expires(time.Duration(o.timeout))}
	if o.wait > 0 {
		opts = append(opts, lockmgr.Wait(time.Duration(o.wait)))
	}
	if o.lockedBy != "" {
		opts = append(opts, lockmgr.LockedBy(o.lockedBy))
	}
	return opts
}

// runLocked takes name, runs argv under it and returns an exitError with
// the status to exit with.
func (a *app) runLocked(ctx context.Context, name string, argv []string, o *runOptions) error {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwardedSignals...)
	defer signal.Stop(sigs)
	m, _, err := a.manager(ctx, false)
	if err != nil {
		return err
	}
	lockCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	scope, err := a.acquire(lockCtx, cancel, m, name, argv, o, sigs)
	if err != nil {
		return err
	}
	a.event(o, runEvent{Event: "acquired", Name: name, Lock: newLockJSON(scope.Main())}, "")
	code, cmdCode, lost := a.supervise(scope, name, argv, o, sigs)
	if lost {
		_ = scope.Close() // nothing left to release
	} else {
		a.release(scope, name, o)
	}
	a.event(o, runEvent{Event: "exited", Name: name, ExitCode: &code, CommandExitCode: cmdCode}, "")
	return &exitError{code: code}
}

// acquire takes name, giving up when a signal arrives first.
func (a *app) acquire(ctx context.Context, cancel context.CancelFunc, m *lockmgr.Manager, name string,
	argv []string, o *runOptions, sigs <-chan os.Signal) (*lockmgr.Scope, error) {
	type result struct {
		scope *lockmgr.Scope
		err   error
	}
	done := make(chan result, 1)
	go func() {
		s, err := m.Acquire(ctx, name, o.lockOptions()...)
		done <- result{s, err}
	}()
	interrupted := func(sig os.Signal) error {
		return &exitError{code: signalStatus(sig), err: fmt.Errorf("got %s while waiting for lock '%s'; %s not run", signalName(sig), name, argv[0])}
	}
	select {
	case r := <-done:
		if r.err != nil {
			return nil, a.acquireError(ctx, m, name, argv, o, r.err)
		}
		select {
		case sig := <-sigs: // it came as the lock did: CMD was never started
			a.release(r.scope, name, o)
			return nil, interrupted(sig)
		default:
		}
		return r.scope, nil
	case sig := <-sigs:
		cancel()
		// Acquire returns once its attempt is over: a lock it won as the
		// signal came is in r.scope, and goes back at once.
		if r := <-done; r.scope != nil {
			a.release(r.scope, name, o)
		}
		return nil, interrupted(sig)
	}
}

// release closes scope, reporting a failure: the lock then stays until it
// expires.
func (a *app) release(scope *lockmgr.Scope, name string, o *runOptions) {
	if err := scope.Close(); err != nil {
		msg := fmt.Sprintf("releasing lock '%s': %s (it expires by itself %s after its last renewal)", name, oneLine(err), time.Duration(o.timeout))
		a.event(o, runEvent{Event: "error", Name: name}, msg)
	}
}

// acquireError reports a failed Acquire: exit 75 naming the holder when
// the lock is held, else an error.
func (a *app) acquireError(ctx context.Context, m *lockmgr.Manager, name string, argv []string, o *runOptions, err error) error {
	if !errors.Is(err, lockmgr.ErrLocked) {
		return fmt.Errorf("taking lock '%s': %w", name, err)
	}
	holder := findHolder(ctx, m, name, err)
	msg := fmt.Sprintf("lock '%s' is held", name)
	if o.wait > 0 {
		msg = fmt.Sprintf("lock '%s' is still held after %s", name, time.Duration(o.wait))
	}
	if holder != nil {
		msg += " by " + holderText(holder)
	}
	msg += "; not running " + argv[0]
	code := exitTempFail
	if o.asJSON {
		a.event(o, runEvent{Event: "locked", Name: name, ExitCode: &code, Lock: newLockJSON(holder)}, msg)
		return &exitError{code: code}
	}
	return &exitError{code: code, err: errors.New(msg)}
}

// findHolder returns who holds name: the lock carried by err if any, else
// the live lock of that name, else nil.
func findHolder(ctx context.Context, m *lockmgr.Manager, name string, err error) *lockmgr.Lock {
	var lf *lockmgr.LockFail
	if errors.As(err, &lf) && lf.Lock != nil {
		return lf.Lock
	}
	holder, gerr := m.Get(context.WithoutCancel(ctx), name)
	if gerr != nil {
		return nil
	}
	return holder
}

// supervise runs argv while scope holds the lock and returns lockmgr's
// exit status, CMD's status (nil if it did not start) and whether the lock
// was lost.
func (a *app) supervise(scope *lockmgr.Scope, name string, argv []string, o *runOptions, sigs <-chan os.Signal) (code int, cmdCode *int, lost bool) {
	c, err := startChild(argv, a.stdin, a.stdout, a.stderr)
	if err != nil {
		a.event(o, runEvent{Event: "error", Name: name}, fmt.Sprintf("cannot run %s: %s", argv[0], oneLine(err)))
		return startFailureStatus(err), nil, false
	}
	exited := make(chan int, 1)
	go func() { exited <- c.wait() }()
	lostCh := scope.Context().Done()
	var killAt <-chan time.Time
	for {
		select {
		case status := <-exited:
			if lost {
				return exitLockLost, &status, true
			}
			return status, &status, false
		case sig := <-sigs:
			c.forward(sig)
		case <-lostCh:
			lostCh, lost = nil, true
			msg := fmt.Sprintf("lock '%s' was lost while %s was running; sending it SIGTERM", name, argv[0])
			a.event(o, runEvent{Event: "lost", Name: name}, msg)
			c.terminate()
			killAt = time.After(time.Duration(o.killAfter))
		case <-killAt:
			killAt = nil
			c.kill()
		}
	}
}

// runEvent is one --json message of run.
type runEvent struct {
	Event           string    `json:"event"`
	Name            string    `json:"name"`
	ExitCode        *int      `json:"exit_code,omitempty"`
	CommandExitCode *int      `json:"command_exit_code,omitempty"`
	Lock            *lockJSON `json:"lock,omitempty"`
	Message         string    `json:"message,omitempty"`
}

// event reports e on stderr: as JSON with --json, else msg as a
// "lockmgr: " line (nothing when msg is empty).
func (a *app) event(o *runOptions, e runEvent, msg string) {
	if o.asJSON {
		e.Message = msg
		_ = writeJSON(a.stderr, e)
		return
	}
	if msg != "" {
		a.errorf("%s", msg)
	}
}
