package main

import (
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/gormlock/lockmgr"
	"github.com/spf13/cobra"
)

const setLong = `set creates and renews locks, as django-lockmgr's set_lock does. For each
NAME, in order:

  free                    locked for --timeout                 status create
  free, with -r           left alone                           status skip
  held                    renewed: expires no sooner than now+--timeout
                          (never shortened)                    status extend
  held, with -n           left alone                           status skip
  held, with -e           everything this run did is rolled back, the holder
                          is printed and set exits with status 2

set renews a name whoever holds it: it is an operator's tool. The whole
run is one transaction.

OUTPUT
  A per-lock table (Name, Was Locked?, Now Locked?, Status, Expires) and
  the four counts: Locks Created, Locks Renewed, Renewals Skipped,
  Creations Skipped. With -e and a held name, one line on stderr:
    lockmgr: set --fail: lock 'b' is held by "web1" (pid 42) until ...; nothing was changed

JSON OUTPUT
  With --json, one object on one line:
    {"locks": [LOCK, ...],
     "counts": {"created": 1, "renewed": 0, "skip_create": 0, "skip_renew": 0},
     "statuses": [{"name": "a", "was_locked": false, "locked": true, "status": "create"}, ...]}
  With -e and a held name (status 2):
    {"error": "locked", "lock": LOCK}
` + lockJSONDoc

// statusReportRule is the rule above set's table, 57 characters like rule.
var statusReportRule = "====================Status Report" + rule[33:]

// setOptions are set's flags.
type setOptions struct {
	noRenew, onlyRenew, noTimeout, fail, asJSON bool
	timeout                                     durationFlag
	lockedBy                                    string
	processID                                   int64
}

// setCommand builds "lockmgr set".
func (a *app) setCommand() *cobra.Command {
	o := &setOptions{timeout: durationFlag(600 * time.Second)}
	cmd := &cobra.Command{
		Use:   "set NAME... [flags]",
		Short: "Create or renew locks (django-lockmgr's set_lock)",
		Long:  setLong,
		Example: `  # Hold "deploy" for ten minutes, whoever had it
  lockmgr set deploy -t 10m

  # Take both or neither; exit status 2 if either is held
  lockmgr set -e db-migrate cache-flush

  # A lock that stays until 'lockmgr clear maintenance'
  lockmgr set -k maintenance --locked-by "$USER"`,
		Args: a.minArgs(1, "at least one lock NAME"),
		RunE: func(cmd *cobra.Command, names []string) error {
			return a.runSet(cmd, names, o)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.noRenew, "no-renew", "n", false, "do not renew locks that are already held")
	f.BoolVarP(&o.onlyRenew, "only-renew", "r", false, "only renew held locks, do not create new ones")
	f.BoolVarP(&o.noTimeout, "no-timeout", "k", false, "never expire these locks (--timeout is ignored); 'lockmgr clear' removes them")
	f.VarP(&o.timeout, "timeout", "t", "lock for this long: 90s, 10m, 1h, or a number of seconds; 0 means never expire")
	f.BoolVarP(&o.fail, "fail", "e", false, "if any NAME is held, change nothing and exit with status 2")
	f.StringVar(&o.lockedBy, "locked-by", "", "record `S` as who holds the locks (default: this host's name)")
	f.Int64Var(&o.processID, "process-id", 0, "record `PID` as the holder's process id (default: none, as django-lockmgr's set_lock)")
	f.BoolVar(&o.asJSON, "json", false, "print JSON (see JSON OUTPUT)")
	return cmd
}

// lockOptions turns set's flags into SetLock options.
func (o *setOptions) lockOptions() []lockmgr.LockOption {
	opts := []lockmgr.LockOption{lockmgr.Expires(time.Duration(o.timeout))}
	if o.noTimeout {
		opts = []lockmgr.LockOption{lockmgr.NoExpiry()}
	}
	if o.fail {
		opts = append(opts, lockmgr.Fail())
	}
	if o.noRenew {
		opts = append(opts, lockmgr.NoRenew())
	}
	if o.onlyRenew {
		opts = append(opts, lockmgr.NoCreate())
	}
	if o.lockedBy != "" {
		opts = append(opts, lockmgr.LockedBy(o.lockedBy))
	}
	return append(opts, lockmgr.Process(o.processID)) // 0: none
}

// runSet runs SetLock and reports its result.
func (a *app) runSet(cmd *cobra.Command, names []string, o *setOptions) error {
	if err := validateNames(names); err != nil {
		return err
	}
	m, _, err := a.manager(cmd.Context(), false)
	if err != nil {
		return err
	}
	res, err := m.SetLock(cmd.Context(), names, o.lockOptions()...)
	if errors.Is(err, lockmgr.ErrLocked) {
		return a.reportSetHeld(err, o.asJSON)
	}
	if err != nil {
		return fmt.Errorf("setting locks: %w", err)
	}
	if o.asJSON {
		return writeJSON(a.stdout, newSetJSON(res))
	}
	writeSetReport(a.stdout, names, res)
	return nil
}

// reportSetHeld reports set --fail finding a held name, and exits 2.
func (a *app) reportSetHeld(err error, asJSON bool) error {
	var lf *lockmgr.LockFail
	var holder *lockmgr.Lock
	if errors.As(err, &lf) {
		holder = lf.Lock
	}
	if asJSON {
		_ = writeJSON(a.stdout, struct {
			Error string    `json:"error"`
			Lock  *lockJSON `json:"lock"`
		}{"locked", newLockJSON(holder)})
	}
	msg := "set --fail: a lock is already held; nothing was changed"
	if holder != nil {
		msg = fmt.Sprintf("set --fail: lock '%s' is held by %s; nothing was changed", holder.Name, holderText(holder))
	}
	return &exitError{code: exitSetHeld, err: errors.New(msg)}
}

// writeSetReport prints django's status report: a per-lock table and the
// four counts.
func writeSetReport(w io.Writer, names []string, res *lockmgr.LockSetResult) {
	byName := make(map[string]*lockmgr.Lock, len(res.Locks))
	for _, l := range res.Locks {
		byName[l.Name] = l
	}
	fmt.Fprintf(w, "Finished creating / renewing %d locks.\n\n", len(names))
	fmt.Fprintln(w, statusReportRule)
	fmt.Fprintf(w, "  Per-lock:\n\n")
	tw := tabwriter.NewWriter(w, 20, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "    Name\tWas Locked?\tNow Locked?\tStatus\tExpires")
	for _, s := range res.Statuses {
		fmt.Fprintf(tw, "    %s\t%s\t%s\t%s\t%s\n", s.Name, yesNo(s.WasLocked), yesNo(s.Locked), s.Status, expiresCell(byName[s.Name], s.Locked))
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "\n%s\n  Summary:\n\n", rule)
	fmt.Fprintf(w, "    Locks Created:      %d\n", res.Counts.Created)
	fmt.Fprintf(w, "    Locks Renewed:      %d\n", res.Counts.Renewed)
	fmt.Fprintf(w, "    Renewals Skipped:   %d\n", res.Counts.SkipRenew)
	fmt.Fprintf(w, "    Creations Skipped:  %d\n", res.Counts.SkipCreate)
}

// expiresCell is the Expires column: "in 9m59s", "never" or "-".
func expiresCell(l *lockmgr.Lock, locked bool) string {
	if l == nil || !locked {
		return "-"
	}
	switch s := leftText(l); s {
	case "never expires":
		return "never"
	case "expired": // a short lock on a slow machine, by the time it is printed
		return s
	default:
		return s[len("expires "):]
	}
}

// yesNo is django's YES/NO.
func yesNo(b bool) string {
	if b {
		return "YES"
	}
	return "NO"
}

// setJSON is set's --json output, django's set_lock result.
type setJSON struct {
	Locks  []*lockJSON `json:"locks"`
	Counts struct {
		Created    int `json:"created"`
		Renewed    int `json:"renewed"`
		SkipCreate int `json:"skip_create"`
		SkipRenew  int `json:"skip_renew"`
	} `json:"counts"`
	Statuses []setStatusJSON `json:"statuses"`
}

// setStatusJSON is one entry of setJSON.Statuses.
type setStatusJSON struct {
	Name      string `json:"name"`
	WasLocked bool   `json:"was_locked"`
	Locked    bool   `json:"locked"`
	Status    string `json:"status"`
}

// newSetJSON converts res.
func newSetJSON(res *lockmgr.LockSetResult) setJSON {
	out := setJSON{Locks: make([]*lockJSON, 0, len(res.Locks)), Statuses: make([]setStatusJSON, 0, len(res.Statuses))}
	for _, l := range res.Locks {
		out.Locks = append(out.Locks, newLockJSON(l))
	}
	out.Counts.Created, out.Counts.Renewed = res.Counts.Created, res.Counts.Renewed
	out.Counts.SkipCreate, out.Counts.SkipRenew = res.Counts.SkipCreate, res.Counts.SkipRenew
	for _, s := range res.Statuses {
		out.Statuses = append(out.Statuses, setStatusJSON{s.Name, s.WasLocked, s.Locked, s.Status})
	}
	return out
}
