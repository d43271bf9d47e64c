package lockmgr

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gormlock/lockmgr/internal/engine"
)

// This file compiles each engine's lock statements (internal/engine),
// written with @name placeholders, once per Manager into positional SQL
// plus the order in which to bind the values, and fills those values.
//
// Time: PostgreSQL and MySQL judge expiry by the database's clock
// (statement_timestamp(), UTC_TIMESTAMP(6)); SQLite has no server, so the
// client's clock is passed in as UTC text, the form Django writes.
// Timestamps are read back as microseconds since the epoch (PostgreSQL,
// MySQL) or as text (SQLite), never through the driver's time-zone setting.

type argKey int

const (
	aName    argKey = iota
	aBy             // locked_by
	aPid            // lock_process
	aMicros         // expiry in microseconds; nil: never (PostgreSQL, MySQL)
	aUntil          // now+expiry as UTC text; nil: never (SQLite)
	aToken          // owner token
	aFence          // now in microseconds, the fence floor (SQLite)
	aNow            // now as UTC text (SQLite)
	aChannel        // NOTIFY channel (PostgreSQL)
	aOld            // the expiry a compare-and-set expects (SQLite)
	aOrigin         // this process's NOTIFY payload prefix (noticeOrigin)
	aLazy           // a release may commit without waiting for the disk (PostgreSQL)
	aBounded        // the statement gives up lock waits after lockWaitBound (PostgreSQL; lockwait.go)
	aAfter          // the last name of the previous page (List)
	aLimit          // rows in a page (List)
	aHold           // HoldAtLeast in microseconds (releaseHold)
	aSlots          // a semaphore's number of slots (semaphore.go)
	aMarker         // a semaphore's marker row (semaphore.go)
	numArgs
)

var argNames = map[string]argKey{
	"name": aName, "by": aBy, "pid": aPid, "micros": aMicros, "until": aUntil,
	"token": aToken, "fence": aFence, "now": aNow, "channel": aChannel, "old": aOld,
	"origin": aOrigin, "lazy": aLazy, "bounded": aBounded, "after": aAfter, "limit": aLimit,
	"hold":  aHold,
	"slots": aSlots, "marker": aMarker,
}

// stmt is a compiled statement: SQL with ? placeholders and the values to bind.
type stmt struct {
	sql string // with ? placeholders, for GORM
	// native is sql with the driver's own placeholders ($1, $2, … on
	// PostgreSQL), for the connection pool itself (Manager.pool).
	native string
	args   []argKey
	// synced is sql run with MariaDB Galera's causality checks (see
	// galera.go); empty where the server cannot have them.
	synced string
	// bounded and boundedSynced are sql and synced giving up lock waits
	// after lockWaitBound (MariaDB; lockwait.go); empty elsewhere.
	bounded, boundedSynced string
	reads                  bool // a SELECT: takes no row lock, writes nothing
}

type values [numArgs]any

func (s stmt) bind(v *values) []any {
	out := make([]any, len(s.args))
	for i, k := range s.args {
		out[i] = v[k]
	}
	return out
}

// compile turns "… @name …" into "… ? …" (and "… $1 …" on PostgreSQL)
// and records the order of names.
// An unknown name is a bug in an engine's statements; newDialect reports it.
func (d *dialect) compile(tmpl string) stmt {
	var b, n strings.Builder
	var args []argKey
	for {
		i := strings.IndexByte(tmpl, '@')
		if i < 0 {
			b.WriteString(tmpl)
			n.WriteString(tmpl)
			st := stmt{sql: b.String(), args: args, reads: strings.HasPrefix(b.String(), "SELECT")}
			if st.native = st.sql; d.kind == "postgres" {
				st.native = n.String()
			}
			return st
		}
		b.WriteString(tmpl[:i])
		n.WriteString(tmpl[:i])
		j := i + 1
		for j < len(tmpl) && (tmpl[j] >= 'a' && tmpl[j] <= 'z') {
			j++
		}
		k, ok := argNames[tmpl[i+1:j]]
		if !ok && d.err == nil {
			d.err = fmt.Errorf("lockmgr: internal error: unknown placeholder %q", tmpl[i:j])
		}
		b.WriteByte('?')
		args = append(args, k)
		n.WriteString("$" + strconv.Itoa(len(args)))
		tmpl = tmpl[j:]
	}
}

// server is what lockmgr needs to know of a MySQL-family server.
type server struct {
	returning     bool   // INSERT … RETURNING (MariaDB 10.5+); else acquire reads back by token
	nameCollation string // binary NO PAD: byte-exact names
	tidb          bool   // TiDB: fences from a bucket high-water mark the acquisition writes
	// mariadb: the server may be a Galera node (wsrep_sync_wait, SET
	// STATEMENT … FOR); whether it is, is asked on first use (galera.go).
	mariadb bool
}

// dialect is the compiled SQL of one database kind for one table.
type dialect struct {
	kind        string // "postgres", "mysql" or "sqlite"
	srv         server
	eng         engine.Engine // how the database's errors read (internal/engine)
	clientClock bool          // SQLite: times come from this process, as text
	// renewViaLastInsertID: MySQL has no UPDATE … RETURNING; the new expiry
	// comes back through LAST_INSERT_ID(expr), 0 meaning no row matched.
	renewViaLastInsertID bool
	// addTimeInClient: SQLite's date functions work in whole milliseconds,
	// so an AddTime renewal reads the expiry, adds in Go, and writes it back
	// if unchanged (readUntil, casUntil).
	addTimeInClient bool
	table           string // quoted
	fenceTable      string // quoted; the side table of the highest fences (SQLite, MySQL)
	// fenceTriggers: MySQL's fences come from triggers on the lock table
	// that keep <table>_fence's per-bucket high-water marks (fenceTriggerDDL).
	fenceTriggers bool

	acquire, release, releaseNotify, unlock, unlockNotify stmt
	releaseWatched, unlockWatched                         stmt // NOTIFY only a watched name (Watcher)
	releaseHold                                           stmt // a release that keeps the row until HoldAtLeast passes
	// deleteCounts: the release statements return the count of deleted
	// rows as a row (PostgreSQL) rather than as rows affected.
	deleteCounts                               bool
	acquireExec                                stmt // acquire without RETURNING, for a Galera node (galera.go)
	isLocked, renewMax, renewAdd, clean, reset stmt
	list, listAfter                            stmt   // List's first page, and each one after
	liveFlag                                   stmt   // 1 for a live row, else 0
	readUntil, casUntil                        stmt   // AddTime on SQLite
	readBack                                   stmt   // the acquired row, without RETURNING
	fenceBump                                  stmt   // TiDB: raises the bucket's hwm before acquire
	tidbNoWait, fenceBumpBounded               stmt   // TiDB: locks the name's row or gives up at once; fenceBump waiting 1 s at most
	get                                        stmt   // one live lock
	semaphore                                  stmt   // a semaphore's live marker and slots (semaphore.go)
	semaphoreFree                              stmt   // a semaphore's marker and some free slots (semaphore.go)
	columns                                    string // for SELECTs that read whole rows
	err                                        error
}

// quoter quotes an identifier as the database kind does.
func quoter(kind string) func(string) string {
	if kind == "mysql" {
		return func(s string) string { return "`" + s + "`" }
	}
	return func(s string) string { return `"` + s + `"` }
}

// newDialect compiles the statements of kind's engine for table, as srv
// says the server is; an unsupported kind is ErrInvalidOption.
func newDialect(kind, table string, srv server) (*dialect, error) {
	if kind != "postgres" && kind != "mysql" && kind != "sqlite" {
		return nil, fmt.Errorf("%w: unsupported database %q (lockmgr supports postgres, mysql and sqlite)", ErrInvalidOption, kind)
	}
	quote := quoter(kind)
	parts := strings.Split(table, ".")
	for i, p := range parts {
		parts[i] = quote(p)
	}
	fences := slices.Clone(parts)
	fences[len(fences)-1] = quote(strings.Split(table, ".")[len(parts)-1] + "_fence")
	d := &dialect{kind: kind, srv: srv, table: strings.Join(parts, "."), fenceTable: strings.Join(fences, "."), clientClock: kind == "sqlite",
		renewViaLastInsertID: kind == "mysql", addTimeInClient: kind == "sqlite", fenceTriggers: kind == "mysql" && !srv.tidb}
	d.eng = engine.For(kind, engine.Server{TiDB: srv.tidb, Returning: srv.returning})
	d.use(d.eng.Statements(engine.Table{Name: d.table, Fences: d.fenceTable, LockTimeout: pgLockTimeout}))
	d.addSynced()
	return d, d.err
}

// use compiles the engine's statements s into d.
func (d *dialect) use(s engine.Statements) {
	d.columns = s.Columns
	for _, c := range []struct {
		st   *stmt
		text string
	}{
		{&d.acquire, s.Acquire}, {&d.acquireExec, s.AcquireExec}, {&d.readBack, s.ReadBack},
		{&d.release, s.Release}, {&d.releaseNotify, s.ReleaseNotify}, {&d.releaseWatched, s.ReleaseWatched},
		{&d.releaseHold, s.ReleaseHold},
		{&d.unlock, s.Unlock}, {&d.unlockNotify, s.UnlockNotify}, {&d.unlockWatched, s.UnlockWatched},
		{&d.liveFlag, s.LiveFlag}, {&d.isLocked, s.IsLocked}, {&d.get, s.Get}, {&d.list, s.List}, {&d.listAfter, s.ListAfter},
		{&d.renewMax, s.RenewMax}, {&d.renewAdd, s.RenewAdd}, {&d.readUntil, s.ReadUntil}, {&d.casUntil, s.CasUntil},
		{&d.clean, s.Clean}, {&d.reset, s.Reset},
		{&d.fenceBump, s.FenceBump}, {&d.tidbNoWait, s.NoWait}, {&d.fenceBumpBounded, s.FenceBumpBounded},
		{&d.semaphore, s.Semaphore}, {&d.semaphoreFree, s.SemaphoreFree},
	} {
		if c.text != "" {
			*c.st = d.compile(c.text)
		}
	}
	d.deleteCounts = s.ReleaseCounts
}

// sqliteTimeLayout is how Django, and lockmgr, write times to SQLite.
const sqliteTimeLayout = "2006-01-02 15:04:05.000000"

// fill sets the values every statement of this dialect may bind.
// With a client clock (SQLite) it returns the times it passed: now, and
// now+expires (zero for no expiry), to the microsecond as stored.
func (d *dialect) fill(v *values, expires time.Duration) (now, until time.Time) {
	if !d.clientClock {
		if expires > 0 {
			v[aMicros] = micros(expires)
		}
		return now, until
	}
	now = time.Now().UTC().Truncate(time.Microsecond)
	v[aNow] = now.Format(sqliteTimeLayout)
	v[aFence] = now.UnixMicro()
	if expires > 0 {
		until = addExpires(now, expires)
		v[aUntil] = until.Format(sqliteTimeLayout)
	}
	return now, until
}

// addExpires is t+d rounded up to a whole microsecond, as the databases
// store it.
func addExpires(t time.Time, d time.Duration) time.Time {
	u := t.Add(d)
	if r := u.Nanosecond() % 1000; r != 0 {
		u = u.Add(time.Duration(1000 - r))
	}
	return u
}

// micros is d in whole microseconds, rounded up so a tiny expiry still expires.
func micros(d time.Duration) int64 {
	us := int64(d / time.Microsecond)
	if d%time.Microsecond != 0 {
		us++
	}
	return us
}

func (d *dialect) quoteIndex(name string) string {
	if d.kind == "mysql" {
		return "`" + name + "`"
	}
	return `"` + strings.ReplaceAll(name, ".", "_") + `"`
}

// schema is the schema part of a qualified table name, or nil.
func (d *dialect) schema(table string) any {
	if i := strings.IndexByte(table, '.'); i >= 0 {
		return table[:i]
	}
	return nil
}

func (d *dialect) bareTable(table string) string {
	return table[strings.IndexByte(table, '.')+1:]
}
