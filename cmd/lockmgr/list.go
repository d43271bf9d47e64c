package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/gormlock/lockmgr"
	"github.com/spf13/cobra"
)

// lockJSONDoc describes the LOCK object of every --json output.
const lockJSONDoc = `  LOCK is
    {"name": "deploy", "locked_by": "web1", "lock_process": 4242,
     "locked_until": "2025-06-01T12:10:00.123456Z", "expires_seconds": 599,
     "fence": 7, "created_at": "...", "updated_at": "..."}
  lock_process is null when unknown; locked_until and expires_seconds are
  null for a lock that never expires. expires_seconds is the whole seconds
  left, truncated. Times are UTC, RFC 3339.`

const listLong = `list prints the live locks in the table, ordered by name, the way
django-lockmgr's list_locks does: a header with the count, a rule, one
<Lock ...> line per lock, the rule. After each line it says how long the
lock has left. Expired rows are not shown; 'lockmgr clean' deletes them.

OUTPUT
  There are currently 1 active locks using table "lockmgr_lock"
  =========================================================
  <Lock name='deploy' locked_by='web1' lock_process='4242' locked_until='2025-06-01 12:10:00.123456+00:00'>  (expires in 9m59s; taken 2025-06-01 12:00:00.123456+00:00, held 1s, fence 7)
  =========================================================

  lock_process and locked_until read 'None' when empty; a lock with no
  locked_until never expires. Time left and time held are judged by the
  database's clock (this host's on SQLite). The <Lock ...> part is
  django-lockmgr's; the parenthesis is lockmgr's own.

  --prefix PREFIX shows only the locks whose name starts with PREFIX
  (byte for byte, no wildcards); the header counts those.

WATCH
  --watch redraws the list in place every --interval (default 1s) until
  q, Esc or Ctrl-C: new locks and new holders in green, renewed ones in
  cyan, those with less than a third of their term left (a missed
  renewal: lockmgr renews at every third) in yellow,
  and released or expired ones, struck through in red, for one more
  interval. It needs a terminal; with --json it prints one line per change
  instead (see WATCH JSON).

  When the table holds semaphores (docs/semaphores.md), a summary follows,
  one line per semaphore: its slots held and its size.
    Semaphores (1):
      exports: 2 of 3 slots, held: exports#0, exports#2

JSON OUTPUT
  With --json, one object on one line:
    {"table": "lockmgr_lock", "count": 1, "locks": [LOCK, ...]}
  and, when there are semaphores,
    "semaphores": [{"name": "exports", "size": 3, "held": 2,
                    "slots": ["exports#0", "exports#2"]}, ...]
` + lockJSONDoc + `
  held_seconds is how long the holder has had the lock, whole seconds.

WATCH JSON
  With --watch --json, one object per line: first an "added" event for each
  live lock, then one per change seen between two polls:
    {"event": "added", "name": "deploy", "at": "...", "lock": LOCK}
  event is added (a new lock, or a new holder: a new fence), renewed (the
  same holder moved its expiry), released (the row went away before its
  expiry) or expired (its expiry passed; lock is the last row seen). at is
  the database's clock at the poll that saw it.`

// listCommand builds "lockmgr list".
func (a *app) listCommand() *cobra.Command {
	var o listOptions
	o.interval = durationFlag(time.Second)
	cmd := &cobra.Command{
		Use:   "list [--prefix PREFIX] [--json] [--watch [--interval DURATION]]",
		Short: "List the live locks, ordered by name",
		Long:  listLong,
		Example: `  lockmgr list
  lockmgr list --json | jq -r '.locks[].name'
  lockmgr list --prefix invoice:
  lockmgr list --watch --interval 500ms
  lockmgr list --watch --json | jq -c 'select(.event == "released")'`,
		Args: a.noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.interval < durationFlag(minInterval) {
				return &usageError{cmdPath: cmd.CommandPath(), err: fmt.Errorf("--interval %s is below %s", o.interval.String(), minInterval)}
			}
			_, t, err := a.manager(cmd.Context(), false)
			if err != nil {
				return err
			}
			if o.watch {
				return a.watch(cmd.Context(), t.Table, o)
			}
			return a.listOnce(cmd.Context(), t.Table, o)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.asJSON, "json", false, "print JSON (see JSON OUTPUT)")
	f.StringVar(&o.prefix, "prefix", "", "only the locks whose name starts with `PREFIX`")
	f.BoolVar(&o.watch, "watch", false, "redraw the list in place until q (see WATCH)")
	f.Var(&o.interval, "interval", "with --watch, poll the table this often")
	return cmd
}

// minInterval is the shortest --interval: each poll reads the whole table.
const minInterval = 100 * time.Millisecond

// listOptions are list's flags.
type listOptions struct {
	asJSON, watch bool
	prefix        string
	interval      durationFlag
}

// listOnce prints the live locks once.
func (a *app) listOnce(ctx context.Context, table string, o listOptions) error {
	s, err := readSnapshot(ctx, a.gdb, table, "")
	if err != nil {
		return fmt.Errorf("listing locks: %w", err)
	}
	locks := s.Live(o.prefix)
	if o.asJSON {
		return writeListJSON(a.stdout, table, locks, s.Now)
	}
	writeLockList(a.stdout, fmt.Sprintf("There are currently %d active locks using table %q", len(locks), table), locks, s.Now)
	writeSemaphores(a.stdout, semaphores(locks))
	return nil
}

// writeLockList prints header, a rule, one line per lock and the rule,
// judging time left and held by now.
func writeLockList(w io.Writer, header string, locks []lockmgr.Lock, now time.Time) {
	fmt.Fprintln(w, header)
	fmt.Fprintln(w, rule)
	for i := range locks {
		fmt.Fprintf(w, "%s  (%s; %s)\n", lockLine(&locks[i]), leftTextAt(&locks[i], now), heldText(&locks[i], now))
	}
	fmt.Fprintln(w, rule)
}

// listJSON is list's --json output.
type listJSON struct {
	Table string      `json:"table"`
	Count int         `json:"count"`
	Locks []*lockJSON `json:"locks"`
	// Semaphores groups the semaphores' rows among Locks (semaphore.go).
	Semaphores []semaphoreJSON `json:"semaphores,omitempty"`
}

// writeListJSON prints locks as listJSON.
func writeListJSON(w io.Writer, table string, locks []lockmgr.Lock, now time.Time) error {
	out := listJSON{Table: table, Count: len(locks), Locks: make([]*lockJSON, 0, len(locks)), Semaphores: semaphores(locks)}
	for i := range locks {
		out.Locks = append(out.Locks, newLockJSONAt(&locks[i], now))
	}
	return writeJSON(w, out)
}
