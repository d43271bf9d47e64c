package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/gormlock/lockmgr"
	"github.com/gormlock/lockmgr/pgnotify"
	"github.com/spf13/cobra"
	"gorm.io/gorm"
)

const explainLong = `explain tells everything the table and the database know about one lock:
who holds it (host, process id, the first 8 characters of its owner token),
since when and for how long, until when and how long it has left, when it
was last renewed, its fence, who waits for it where the database can tell,
and whether a GetLock (or 'lockmgr set', 'lockmgr run') would get it right
now, and why not. Times are judged by the database's clock, read in the
same breath as the row, as GetLock judges them (on SQLite, which has no
clock of its own, by this host's, as lockmgr's SQLite statements do).

A lock is in one of four states:
  free      no row: GetLock would take it, with a fence above every earlier one
  held      a live row: GetLock fails with ErrLocked until it expires or is released
  forever   held and never expires: only its holder, or 'lockmgr clear', lets it go
  expired   a row past its expiry: GetLock would take it over (the old
            holder's next Renew or Release fails with ErrNotHeld)

WAITERS
  On PostgreSQL, processes that wait for the name with a pgnotify Listener
  hold a shared advisory lock on (hashtext(channel), hashtext(name)) on the
  listener's session; explain lists those sessions from pg_locks and
  pg_stat_activity (pid, application_name, client address, and when the
  session connected: PostgreSQL does not say since when it waits). Waiters
  without a Listener poll and cannot be seen. MySQL, MariaDB and SQLite
  cannot tell: waiters are "unknown".

OUTPUT
  Lock "deploy" in table "lockmgr_lock" (database clock TIME):
  state:    held
  holder:   web1, pid 4242, token 3f9a1c2e...
  since:    TIME (held 1m0s)
  until:    TIME (expires in 9m0s)
  renewed:  TIME
  fence:    7
  waiters:  none seen (pgnotify listeners on channel "lockmgr_lockmgr_lock")
  GetLock:  would fail with ErrLocked: held by "web1" (pid 4242) for 9m0s more

JSON OUTPUT
  With --json, one object on one line:
    {"table": "lockmgr_lock", "name": "deploy", "db_now": "...",
     "state": "held", "lock": LOCK, "token_prefix": "3f9a1c2e",
     "acquirable": false, "reason": "held by ...", "waiters_known": true,
     "waiters": [{"pid": 812, "application": "worker", "client": "10.0.0.7",
                  "connected_since": "..."}]}
  lock is null when the name is free; waiters is null when waiters_known
  is false. LOCK is as in 'lockmgr list --help', judged by db_now.`

// explainCommand builds "lockmgr explain".
func (a *app) explainCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "explain NAME [--json]",
		Short: "Tell who holds a lock, until when, who waits, and why GetLock would fail",
		Long:  explainLong,
		Example: `  lockmgr explain deploy
  lockmgr explain deploy --json | jq .reason`,
		Args: a.exactArgs(1, "one lock NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := validateNames(args); err != nil {
				return err
			}
			_, t, err := a.manager(cmd.Context(), false)
			if err != nil {
				return err
			}
			e, err := explainLock(cmd.Context(), a.gdb, t.Table, args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(a.stdout, e.json())
			}
			e.write(a.stdout)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (see JSON OUTPUT)")
	return cmd
}

// exactArgs requires exactly n positional arguments.
func (a *app) exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return &usageError{cmdPath: cmd.CommandPath(), err: fmt.Errorf("%s needs %s, got %d arguments", cmd.CommandPath(), what, len(args))}
		}
		return nil
	}
}

// explanation is what explain found out about one name.
type explanation struct {
	table, name string
	now         time.Time     // the database's clock
	lock        *lockmgr.Lock // nil: no row
	channel     string        // pgnotify's channel, on PostgreSQL
	waiters     []waiter      // nil with channel "": unknown
}

// waiter is a PostgreSQL session watching the name through pgnotify.
type waiter struct {
	PID         int64     `json:"pid"`
	Application string    `json:"application"`
	Client      string    `json:"client"`
	Since       time.Time `json:"connected_since"` // the session's start: PostgreSQL does not say since when it waits
}

// explainLock reads name's row, the database's clock and, on PostgreSQL,
// the sessions that watch name.
func explainLock(ctx context.Context, db *gorm.DB, table, name string) (*explanation, error) {
	s, err := readSnapshot(ctx, db, table, name)
	if err != nil {
		return nil, err
	}
	e := &explanation{table: table, name: name, now: s.Now}
	if len(s.Rows) > 0 {
		e.lock = &s.Rows[0]
	}
	if db.Dialector.Name() == "postgres" {
		e.channel = new(pgnotify.Listener).Channel(table)
		if e.waiters, err = pgWaiters(ctx, db, e.channel, name); err != nil {
			return nil, fmt.Errorf("reading who waits for %q: %w", name, err)
		}
	}
	return e, nil
}

// pgWaitersSQL finds the sessions holding pgnotify's shared advisory lock
// on (hashtext(channel), hashtext(name)): pg_locks shows the two int4 keys
// as oids, hence the mask.
const pgWaitersSQL = `SELECT a.pid, COALESCE(a.application_name, ''), COALESCE(host(a.client_addr), 'local'), a.backend_start
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.mode = 'ShareLock' AND l.granted AND l.objsubid = 2
  AND l.classid::bigint = (hashtext(?)::bigint & 4294967295)
  AND l.objid::bigint = (hashtext(?)::bigint & 4294967295)
ORDER BY a.pid`

// pgWaiters lists the sessions watching name on channel.
func pgWaiters(ctx context.Context, db *gorm.DB, channel, name string) ([]waiter, error) {
	rows, err := db.WithContext(ctx).Raw(pgWaitersSQL, channel, name).Rows()
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	out := []waiter{}
	for rows.Next() {
		var w waiter
		if err := rows.Scan(&w.PID, &w.Application, &w.Client, &w.Since); err != nil {
			return nil, err
		}
		w.Since = w.Since.UTC()
		out = append(out, w)
	}
	return out, rows.Err()
}

// state is free, held, forever or expired.
func (e *explanation) state() string {
	switch l := e.lock; {
	case l == nil:
		return "free"
	case l.LockedUntil == nil:
		return "forever"
	case l.LockedUntil.After(e.now):
		return "held"
	}
	return "expired"
}

// acquirable reports whether a GetLock would get the lock now.
func (e *explanation) acquirable() bool {
	s := e.state()
	return s == "free" || s == "expired"
}

// reason says why a GetLock would or would not get the lock now.
func (e *explanation) reason() string {
	l := e.lock
	switch e.state() {
	case "free":
		return "would succeed: no one holds it"
	case "expired":
		return fmt.Sprintf("would succeed, taking it over: %s's lock expired %s ago (the row stays until 'lockmgr clean' or the next acquisition)",
			holderName(l), roundDur(e.now.Sub(*l.LockedUntil)))
	case "forever":
		return fmt.Sprintf("would fail with ErrLocked: held by %s, and it never expires (only its holder or 'lockmgr clear' lets it go)", holderName(l))
	}
	return fmt.Sprintf("would fail with ErrLocked: held by %s for %s more, until %s, unless released or renewed first",
		holderName(l), roundDur(l.LockedUntil.Sub(e.now)), lockmgr.FormatTime(l.LockedUntil))
}

// holderName is `"web1" (pid 4242)`.
func holderName(l *lockmgr.Lock) string {
	if l.LockProcess == nil {
		return fmt.Sprintf("%q", l.LockedBy)
	}
	return fmt.Sprintf("%q (pid %d)", l.LockedBy, *l.LockProcess)
}

// tokenPrefix is the first 8 characters of l's token: enough to tell two
// holders apart, too little to release the lock with.
func tokenPrefix(l *lockmgr.Lock) string {
	if l == nil {
		return ""
	}
	return l.Token[:min(8, len(l.Token))]
}

// write prints e for a person.
func (e *explanation) write(w io.Writer) {
	fmt.Fprintf(w, "Lock %q in table %q (database clock %s):\n", e.name, e.table, lockmgr.FormatTime(&e.now))
	fmt.Fprintf(w, "state:    %s\n", e.state())
	if l := e.lock; l != nil {
		holder := l.LockedBy
		if l.LockProcess != nil {
			holder += fmt.Sprintf(", pid %d", *l.LockProcess)
		}
		fmt.Fprintf(w, "holder:   %s, token %s...\n", holder, tokenPrefix(l))
		end := e.now // an expired lock was held until its expiry
		if l.LockedUntil != nil && l.LockedUntil.Before(end) {
			end = *l.LockedUntil
		}
		fmt.Fprintf(w, "since:    %s (held %s)\n", lockmgr.FormatTime(&l.CreatedAt), roundDur(end.Sub(l.CreatedAt)))
		fmt.Fprintf(w, "until:    %s (%s)\n", lockmgr.FormatTime(l.LockedUntil), leftTextAt(l, e.now))
		fmt.Fprintf(w, "renewed:  %s\n", lockmgr.FormatTime(&l.UpdatedAt))
		fmt.Fprintf(w, "fence:    %d\n", l.Fence)
	}
	fmt.Fprintf(w, "waiters:  %s\n", e.waitersText())
	fmt.Fprintf(w, "GetLock:  %s\n", e.reason())
}

// waitersText lists the waiters, or says why they are unknown.
func (e *explanation) waitersText() string {
	if e.channel == "" {
		return "unknown (only PostgreSQL with pgnotify can tell)"
	}
	if len(e.waiters) == 0 {
		return fmt.Sprintf("none seen (pgnotify listeners on channel %q)", e.channel)
	}
	parts := make([]string, len(e.waiters))
	for i, wt := range e.waiters {
		parts[i] = fmt.Sprintf("pid %d", wt.PID)
		if wt.Application != "" {
			parts[i] += fmt.Sprintf(" %q", wt.Application)
		}
		parts[i] += fmt.Sprintf(" from %s, connected since %s", wt.Client, lockmgr.FormatTime(&wt.Since))
	}
	return fmt.Sprintf("%d through pgnotify: %s", len(parts), strings.Join(parts, "; "))
}

// explainJSON is explain's --json output.
type explainJSON struct {
	Table        string    `json:"table"`
	Name         string    `json:"name"`
	DBNow        time.Time `json:"db_now"`
	State        string    `json:"state"`
	Lock         *lockJSON `json:"lock"`
	TokenPrefix  string    `json:"token_prefix"`
	Acquirable   bool      `json:"acquirable"`
	Reason       string    `json:"reason"`
	WaitersKnown bool      `json:"waiters_known"`
	Waiters      []waiter  `json:"waiters"`
}

// json is e as explainJSON.
func (e *explanation) json() explainJSON {
	out := explainJSON{Table: e.table, Name: e.name, DBNow: e.now, State: e.state(), TokenPrefix: tokenPrefix(e.lock),
		Acquirable: e.acquirable(), Reason: e.reason(), WaitersKnown: e.channel != "", Waiters: e.waiters}
	if e.lock != nil {
		out.Lock = newLockJSONAt(e.lock, e.now)
	}
	return out
}
