package lockmgr

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gormlock/lockmgr/internal/engine"
)

// This file holds every piece of SQL that differs between databases.
// Statements are written with @name placeholders, compiled once per Manager
// into positional SQL plus the order in which to bind the values.
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
	numArgs
)

var argNames = map[string]argKey{
	"name": aName, "by": aBy, "pid": aPid, "micros": aMicros, "until": aUntil,
	"token": aToken, "fence": aFence, "now": aNow, "channel": aChannel, "old": aOld,
	"origin": aOrigin, "lazy": aLazy, "bounded": aBounded, "after": aAfter, "limit": aLimit,
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
// An unknown name is a bug in this file; newDialect reports it.
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
	columns                                    string // for SELECTs that read whole rows
	err                                        error
}

// Fragments that differ per database; the statements below combine them.
type fragments struct {
	now      string // current time
	until    string // now + expiry, or NULL
	fenceNow string // the fence of a new row: now in microseconds, read after fenceLock
	// fenceLock is the FROM clause of the acquisition's row source: it takes
	// a per-name lock, held until commit, before the fence is read. An
	// acquisition that then waits for another's write of the name still
	// reads a later clock than that one did, even if the row it wrote is
	// deleted before this one is inserted. Empty on SQLite, whose write lock
	// serialises whole statements, and on MySQL/MariaDB, whose triggers
	// (fenceTriggerDDL) lock, and write, a bucket row instead.
	fenceLock   string
	fenceWith   string // a WITH clause before the acquisition's INSERT (PostgreSQL: postgresFenceBump)
	micros      func(col string) string
	greatest    string
	addExpiry   func(base string) string // base + expiry
	noExpiry    string                   // true when the call asks for no expiry
	excluded    string                   // the row proposed for insertion
	insertAlias string
	rowPrefix   string // qualifies the existing row's columns in ON CONFLICT
	// cleanBatch deletes up to @limit rows of {t} matching {expired}
	// (CleanLocks), using the index on locked_until.
	cleanBatch string
}

var mysqlFragments = fragments{
	now:   "UTC_TIMESTAMP(6)",
	until: "DATE_ADD(UTC_TIMESTAMP(6), INTERVAL @micros MICROSECOND)",
	// Only a floor: the BEFORE INSERT trigger raises the fence above its
	// bucket's high-water mark (fenceTriggerDDL), which certification
	// orders on Galera whatever a node's clock says.
	fenceNow:  "TIMESTAMPDIFF(MICROSECOND, '1970-01-01', UTC_TIMESTAMP(6))",
	micros:    func(c string) string { return "TIMESTAMPDIFF(MICROSECOND, '1970-01-01', " + c + ")" },
	greatest:  "GREATEST",
	addExpiry: func(b string) string { return "DATE_ADD(" + b + ", INTERVAL @micros MICROSECOND)" },
	noExpiry:  "@micros IS NULL",
	// MySQL takes no LIMIT in an IN subquery; the ORDER BY, the index's
	// own, makes the statement safe for statement-based replication.
	cleanBatch: "DELETE FROM {t} WHERE {expired} ORDER BY locked_until, name LIMIT @limit",
}

// tidbFragments differ from MySQL's in the fence. With several TiDB
// servers, UTC_TIMESTAMP() is the clock of whichever server runs the
// statement, so a fence read from it after a release can be lower than
// the previous holder's. An acquisition instead first raises its bucket's
// high-water mark (fenceBump, in the same transaction), a write that TiDB
// orders after every earlier write of the bucket, and takes the fence from
// it; the clock is only a floor that keeps fences near the ones written
// before the table was on TiDB.
var tidbFragments = func() fragments {
	f := mysqlFragments
	f.fenceNow = "hwm"
	f.fenceLock = " FROM {fences} WHERE id = CRC32(@name) % " + fenceBuckets + " FOR UPDATE"
	return f
}()

const tidbFenceBump = "UPDATE {fences} SET hwm = GREATEST(hwm + 1, TIMESTAMPDIFF(MICROSECOND, '1970-01-01', UTC_TIMESTAMP(6)))" +
	" WHERE id = CRC32(@name) % " + fenceBuckets

// quoter quotes an identifier as the database kind does.
func quoter(kind string) func(string) string {
	if kind == "mysql" {
		return func(s string) string { return "`" + s + "`" }
	}
	return func(s string) string { return `"` + s + `"` }
}

func newDialect(kind, table string, srv server) (*dialect, error) {
	var f fragments
	switch kind {
	case "postgres", "sqlite":
	case "mysql":
		f = mysqlFragments
		if srv.tidb {
			f = tidbFragments
		}
	default:
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
	if e, ok := d.eng.(interface {
		Statements(engine.Table) engine.Statements
	}); ok {
		d.use(e.Statements(engine.Table{Name: d.table, Fences: d.fenceTable, LockTimeout: pgLockTimeout}))
	} else {
		d.build(f)
	}
	if srv.tidb {
		d.fenceBump = d.compile(strings.ReplaceAll(tidbFenceBump, "{fences}", d.fenceTable))
		d.tidbNoWait = d.compile("SELECT 1 FROM " + d.table + " WHERE name = @name FOR UPDATE NOWAIT")
		d.fenceBumpBounded = d.compile(strings.Replace(strings.ReplaceAll(tidbFenceBump, "{fences}", d.fenceTable),
			"UPDATE ", "UPDATE /*+ SET_VAR(innodb_lock_wait_timeout=1) */ ", 1))
	}
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
		{&d.unlock, s.Unlock}, {&d.unlockNotify, s.UnlockNotify}, {&d.unlockWatched, s.UnlockWatched},
		{&d.liveFlag, s.LiveFlag}, {&d.isLocked, s.IsLocked}, {&d.get, s.Get}, {&d.list, s.List}, {&d.listAfter, s.ListAfter},
		{&d.renewMax, s.RenewMax}, {&d.renewAdd, s.RenewAdd}, {&d.readUntil, s.ReadUntil}, {&d.casUntil, s.CasUntil},
		{&d.clean, s.Clean}, {&d.reset, s.Reset},
		{&d.fenceBump, s.FenceBump}, {&d.tidbNoWait, s.NoWait}, {&d.fenceBumpBounded, s.FenceBumpBounded},
	} {
		if c.text != "" {
			*c.st = d.compile(c.text)
		}
	}
	d.deleteCounts = s.ReleaseCounts
}

func (d *dialect) build(f fragments) {
	t := d.table
	live := "(locked_until IS NULL OR locked_until > " + f.now + ")"
	d.columns = "name, COALESCE(locked_by, ''), lock_process, " + f.micros("locked_until") +
		", token, fence, " + f.micros("created_at") + ", " + f.micros("updated_at")
	d.acquire = d.compile(d.acquireSQL(f, d.srv.returning))
	if d.kind == "mysql" && d.srv.returning {
		d.acquireExec = d.compile(d.acquireSQL(f, false))
	}
	d.readBack = d.compile("SELECT " + acquired(f) + " FROM " + t + " WHERE name = @name AND token = @token")
	d.release = d.compile("DELETE FROM " + t + " WHERE name = @name AND token = @token")
	d.unlock = d.compile("DELETE FROM " + t + " WHERE name = @name")
	d.liveFlag = d.compile("CASE WHEN " + live + " THEN 1 ELSE 0 END")
	d.isLocked = d.compile("SELECT COUNT(*) FROM " + t + " WHERE name = @name AND " + live)
	d.renewMax = d.compile(d.renewSQL(f, f.greatest+"(locked_until, "+f.until+")"))
	if !d.addTimeInClient { // SQLite adds in Go: readUntil, casUntil
		d.renewAdd = d.compile(d.renewSQL(f, f.addExpiry(f.greatest+"(locked_until, "+f.now+")")))
	}
	d.readUntil = d.compile("SELECT locked_until || '' FROM " + t + " WHERE name = @name AND token = @token")
	d.casUntil = d.compile("UPDATE " + t + " SET locked_until = @until, updated_at = @now" +
		" WHERE name = @name AND token = @token AND locked_until = @old")
	d.clean = d.compile(strings.NewReplacer("{t}", t, "{expired}", "locked_until <= "+f.now).Replace(f.cleanBatch))
	d.reset = d.compile("DELETE FROM " + t + " WHERE true")
	// List reads pages in the order of the primary key's index, by the
	// column's own collation in both the ORDER BY and the keyset, so that
	// each page is a range of the index and pages neither skip nor repeat
	// a name; List puts them in byte order itself (COLLATE "C" here would
	// sort the whole table on PostgreSQL for every page).
	page := " ORDER BY name LIMIT @limit"
	d.list = d.compile("SELECT " + d.columns + " FROM " + t + " WHERE " + live + page)
	d.listAfter = d.compile("SELECT " + d.columns + " FROM " + t + " WHERE name > @after AND " + live + page)
	d.get = d.compile("SELECT " + d.columns + " FROM " + t + " WHERE name = @name AND " + live)
}

// acquireSQL is the one-statement acquisition: insert, or take over a row
// whose expiry has passed, and return the row as it stands afterwards.
// The caller won when the returned token is its own.
func (d *dialect) acquireSQL(f fragments, withReturning bool) string {
	row := "@name, @by, @pid, " + f.until + ", @token, " + f.fenceNow + ", " + f.now + ", " + f.now
	source := " VALUES (" + row + ")"
	if f.fenceLock != "" {
		source = " SELECT " + row + f.fenceLock
	}
	insert := strings.ReplaceAll(f.fenceWith+"INSERT INTO "+d.table+f.insertAlias+
		" (name, locked_by, lock_process, locked_until, token, fence, created_at, updated_at)"+source, "{fences}", d.fenceTable)
	returning := " RETURNING " + acquired(f)
	switch {
	case !withReturning:
		returning = ""
	case d.clientClock: // the caller knows the times it passed
		returning = " RETURNING token, fence"
	}
	if d.kind == "mysql" {
		// A later assignment sees the columns already assigned, so locked_until,
		// which decides "expired", is assigned last.
		expired := "locked_until <= UTC_TIMESTAMP(6)"
		set := func(col, val string) string { return col + " = IF(" + expired + ", " + val + ", " + col + ")" }
		return insert + " ON DUPLICATE KEY UPDATE " + strings.Join([]string{
			set("locked_by", "VALUES(locked_by)"), set("lock_process", "VALUES(lock_process)"),
			set("token", "VALUES(token)"), set("fence", "GREATEST(fence + 1, VALUES(fence))"),
			set("created_at", "VALUES(created_at)"), set("updated_at", "VALUES(updated_at)"),
			set("locked_until", "VALUES(locked_until)"),
		}, ", ") + returning
	}
	x, p := f.excluded, f.rowPrefix
	return insert + " ON CONFLICT (name) DO UPDATE SET locked_by = " + x + ".locked_by, lock_process = " + x +
		".lock_process, locked_until = " + x + ".locked_until, token = " + x + ".token, fence = " + f.greatest +
		"(" + p + "fence + 1, " + x + ".fence), created_at = " + x + ".created_at, updated_at = " + x + ".updated_at" +
		" WHERE " + p + "locked_until <= " + f.now + returning
}

// fenceBuckets is how many rows MySQL's <table>_fence holds: an acquisition
// locks the one its name hashes to, as PostgreSQL's takes an advisory lock.
const fenceBuckets = "1024" // = 32 × 32, see migrateMySQLFences

// acquired lists what an acquisition reads back: the token (the caller's
// own if it won), the fence, the expiry and the acquisition time.
func acquired(f fragments) string {
	return "token, fence, " + f.micros("locked_until") + ", " + f.micros("created_at")
}

// renewSQL is the owner-checked renewal: by name and token, never shortening
// a lock and keeping a never-expiring one so (∞ + d = ∞). A renewal with
// no expiry (@micros / @until NULL) makes the lock never expire.
func (d *dialect) renewSQL(f fragments, extended string) string {
	newUntil := "CASE WHEN locked_until IS NULL OR " + f.noExpiry + " THEN NULL ELSE " + extended + " END"
	where := " WHERE name = @name AND token = @token"
	if d.renewViaLastInsertID {
		// fence + 0 * LAST_INSERT_ID(…) carries the new expiry back (1: never);
		// assigned first, it reads the old locked_until under any sql_mode.
		return "UPDATE " + d.table + " SET fence = fence + 0 * LAST_INSERT_ID(COALESCE(" + f.micros(newUntil) +
			", 1)), locked_until = " + newUntil + ", updated_at = " + f.now + where
	}
	return "UPDATE " + d.table + " SET locked_until = " + newUntil + ", updated_at = " + f.now + where +
		" RETURNING " + f.micros("locked_until")
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
