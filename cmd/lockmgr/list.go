package main

import (
	"fmt"
	"io"

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
  <Lock name='deploy' locked_by='web1' lock_process='4242' locked_until='2025-06-01 12:10:00.123456+00:00'>  (expires in 9m59s)
  =========================================================

  lock_process and locked_until read 'None' when empty; a lock with no
  locked_until never expires.

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
` + lockJSONDoc

// listCommand builds "lockmgr list".
func (a *app) listCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list [--json]",
		Short: "List the live locks, ordered by name",
		Long:  listLong,
		Example: `  lockmgr list
  lockmgr list --json | jq -r '.locks[].name'`,
		Args: a.noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, t, err := a.manager(cmd.Context(), false)
			if err != nil {
				return err
			}
			locks, err := m.List(cmd.Context())
			if err != nil {
				return fmt.Errorf("listing locks: %w", err)
			}
			if asJSON {
				return writeListJSON(a.stdout, t.Table, locks)
			}
			writeLockList(a.stdout, fmt.Sprintf("There are currently %d active locks using table %q", len(locks), t.Table), locks)
			writeSemaphores(a.stdout, semaphores(locks))
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (see JSON OUTPUT)")
	return cmd
}

// writeLockList prints header, a rule, one line per lock and the rule.
func writeLockList(w io.Writer, header string, locks []lockmgr.Lock) {
	fmt.Fprintln(w, header)
	fmt.Fprintln(w, rule)
	for i := range locks {
		fmt.Fprintf(w, "%s  (%s)\n", lockLine(&locks[i]), leftText(&locks[i]))
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
func writeListJSON(w io.Writer, table string, locks []lockmgr.Lock) error {
	out := listJSON{Table: table, Count: len(locks), Locks: make([]*lockJSON, 0, len(locks)), Semaphores: semaphores(locks)}
	for i := range locks {
		out.Locks = append(out.Locks, newLockJSON(&locks[i]))
	}
	return writeJSON(w, out)
}
