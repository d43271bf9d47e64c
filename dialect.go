package lockmgr

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gormlock/lockmgr/internal/engine"
)

// This file compiles each engine's lock statements (internal/engine),
// written with @name placeholders, once per Manager into positional SQL
// plus the order in which to bind the values, and fills those values.
//
// Time: the engine says whose clock judges expiry, and which values carry
// it (engine.Times: the database's, or on SQLite the client's as UTC
// text); timestamps come back as the engine reads them (engine.Acquired,
// toTime), never through the driver's time-zone setting.

// The values a statement binds (engine.Arg), by the names lockmgr's code
// has always used.
type argKey = engine.Arg

const (
	aName    = engine.ArgName
	aBy      = engine.ArgBy
	aPid     = engine.ArgPid
	aMicros  = engine.ArgMicros
	aUntil   = engine.ArgUntil
	aToken   = engine.ArgToken
	aFence   = engine.ArgFence
	aNow     = engine.ArgNow
	aChannel = engine.ArgChannel
	aOld     = engine.ArgOld
	aOrigin  = engine.ArgOrigin
	aLazy    = engine.ArgLazy
	aBounded = engine.ArgBounded
	aAfter   = engine.ArgAfter
	aLimit   = engine.ArgLimit
	aHold    = engine.ArgHold
	aSlots   = engine.ArgSlots
	aMarker  = engine.ArgMarker
	numArgs  = engine.NumArgs
)

var argNames = engine.ArgNames

// stmt is a compiled statement: SQL with ? placeholders and the values to bind.
type stmt struct {
	sql string // with ? placeholders, for GORM
	// native is sql with the driver's own placeholders ($1, $2, … on
	// PostgreSQL), for the connection pool itself (Manager.pool).
	native string
	args   []argKey
	// forms are the other texts the engine sends it as (engine.Forms): on
	// a Galera node, giving up lock waits after lockWaitBound.
	forms engine.Forms
	reads bool // a SELECT: takes no row lock, writes nothing
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
			return stmt{sql: b.String(), native: n.String(), args: args, reads: strings.HasPrefix(b.String(), "SELECT")}
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
		n.WriteString(d.eng.Placeholder(len(args)))
		tmpl = tmpl[j:]
	}
}

// dialect is the compiled SQL of one engine for one table.
type dialect struct {
	eng        engine.Engine // the database's statements, steps and errors (internal/engine)
	t          engine.Table  // the lock table as the engine names it
	table      string        // quoted
	fenceTable string        // quoted; the side table of fence high-water marks

	acquire, release, releaseNotify, unlock, unlockNotify stmt
	releaseWatched, unlockWatched                         stmt // NOTIFY only a watched name (Watcher)
	releaseHold                                           stmt // a release that keeps the row until HoldAtLeast passes
	acquireExec                                           stmt // acquire without RETURNING, for a Galera node
	isLocked, renewMax, renewAdd, clean, reset            stmt
	list, listAfter                                       stmt   // List's first page, and each one after
	liveFlag                                              stmt   // 1 for a live row, else 0
	readUntil, casUntil                                   stmt   // AddTime on SQLite
	readBack                                              stmt   // the acquired row, without RETURNING
	fenceBump                                             stmt   // TiDB: raises the bucket's hwm before acquire
	tidbNoWait, fenceBumpBounded                          stmt   // TiDB: locks the name's row or gives up at once; fenceBump waiting 1 s at most
	get                                                   stmt   // one live lock
	semaphore                                             stmt   // a semaphore's live marker and slots (semaphore.go)
	semaphoreFree                                         stmt   // a semaphore's marker and some free slots (semaphore.go)
	guard, guardMiss                                      stmt   // Manager.Guard's write, and its reading of a miss (guard.go)
	columns                                               string // for SELECTs that read whole rows
	byKey                                                 [engine.NumStmts]*stmt
	err                                                   error
}

// newDialect compiles the statements of kind's engine for table, as srv
// says the server is; an unsupported kind is ErrInvalidOption.
func newDialect(kind, table string, srv engine.Server) (*dialect, error) {
	eng := engine.For(kind, srv)
	if eng == nil {
		return nil, fmt.Errorf("%w: unsupported database %q (lockmgr supports postgres, mysql and sqlite)", ErrInvalidOption, kind)
	}
	parts := strings.Split(table, ".")
	for i, p := range parts {
		parts[i] = eng.Quote(p)
	}
	fences := slices.Clone(parts)
	fences[len(fences)-1] = eng.Quote(strings.Split(table, ".")[len(parts)-1] + "_fence")
	d := &dialect{eng: eng, table: strings.Join(parts, "."), fenceTable: strings.Join(fences, ".")}
	d.t = engine.Table{Given: table, Name: d.table, Fences: d.fenceTable, Bound: lockWaitBound}
	d.use(eng.Statements(d.t))
	return d, d.err
}

// use compiles the engine's statements s into d.
func (d *dialect) use(s engine.Statements) {
	d.columns = s.Columns
	for _, c := range []struct {
		key  engine.Stmt
		st   *stmt
		text string
	}{
		{engine.StAcquire, &d.acquire, s.Acquire}, {engine.StAcquireExec, &d.acquireExec, s.AcquireExec},
		{engine.StReadBack, &d.readBack, s.ReadBack}, {engine.StRelease, &d.release, s.Release},
		{engine.StReleaseNotify, &d.releaseNotify, s.ReleaseNotify}, {engine.StReleaseWatched, &d.releaseWatched, s.ReleaseWatched},
		{engine.StUnlock, &d.unlock, s.Unlock}, {engine.StUnlockNotify, &d.unlockNotify, s.UnlockNotify},
		{engine.StUnlockWatched, &d.unlockWatched, s.UnlockWatched}, {engine.StLiveFlag, &d.liveFlag, s.LiveFlag},
		{engine.StIsLocked, &d.isLocked, s.IsLocked}, {engine.StGet, &d.get, s.Get}, {engine.StList, &d.list, s.List},
		{engine.StListAfter, &d.listAfter, s.ListAfter}, {engine.StRenewMax, &d.renewMax, s.RenewMax},
		{engine.StRenewAdd, &d.renewAdd, s.RenewAdd}, {engine.StReadUntil, &d.readUntil, s.ReadUntil},
		{engine.StCasUntil, &d.casUntil, s.CasUntil}, {engine.StClean, &d.clean, s.Clean}, {engine.StReset, &d.reset, s.Reset},
		{engine.StFenceBump, &d.fenceBump, s.FenceBump}, {engine.StNoWait, &d.tidbNoWait, s.NoWait},
		{engine.StFenceBumpBounded, &d.fenceBumpBounded, s.FenceBumpBounded},
		{engine.StReleaseHold, &d.releaseHold, s.ReleaseHold},
		{engine.StSemaphore, &d.semaphore, s.Semaphore}, {engine.StSemaphoreFree, &d.semaphoreFree, s.SemaphoreFree},
		{engine.StGuard, &d.guard, s.Guard}, {engine.StGuardMiss, &d.guardMiss, s.GuardMiss},
	} {
		d.byKey[c.key] = c.st
		if c.text != "" {
			*c.st = d.compile(c.text)
			c.st.forms = d.eng.Forms(c.st.sql, c.key, c.st.reads)
		}
	}
}

// fill sets the values every statement of this dialect may bind that
// depend on whose clock judges expiry. With a client clock (SQLite) it
// returns the times it passed, else zero times.
func (d *dialect) fill(v *values, expires time.Duration) engine.Times {
	t := d.eng.Times(time.Now, expires)
	v[aMicros], v[aUntil], v[aNow], v[aFence] = t.Micros, t.Until, t.Now, t.Fence
	return t
}
