package engine

import (
	"strings"
	"time"
)

// Statements are one engine's lock statements for one table, as SQL with
// @name placeholders, which package lockmgr compiles into the driver's
// own. An empty text is a statement the engine does not have.
type Statements struct {
	Columns string // what a SELECT of whole lock rows reads, in Lock's order

	// Acquire inserts a name's row, or takes over one whose expiry has
	// passed, and returns the row as it then stands; AcquireExec is Acquire
	// without RETURNING and ReadBack reads the acquired row by token.
	Acquire, AcquireExec, ReadBack string
	// Release and Unlock delete a name's row, by token or not; the Notify
	// and Watched forms also send a NOTIFY of it (always, or only when a
	// Watcher waits for the name).
	Release, ReleaseNotify, ReleaseWatched string
	Unlock, UnlockNotify, UnlockWatched    string
	// ReleaseHold is a release under HoldAtLeast: while the row's
	// acquisition (created_at) plus @hold microseconds is still to come by
	// the database's clock, it keeps the row held by @token until then,
	// changing its expiry; otherwise it changes nothing, and Release
	// deletes it.
	ReleaseHold string
	// ReleaseCounts: Release and Unlock return the count of rows they
	// deleted as a row, not as rows affected.
	ReleaseCounts bool

	LiveFlag  string // an expression: 1 for a live row, else 0
	IsLocked  string // counts the name's live row
	Get       string // the name's live row
	List      string // the first page of live rows, in the index's order
	ListAfter string // the page after @after

	// RenewMax and RenewAdd are the owner-checked renewals: expiry set to
	// now+@micros (never shortened), or added to it. ReadUntil and
	// CasUntil are AddTime done in the client: the expiry read, and
	// written back only if unchanged.
	RenewMax, RenewAdd, ReadUntil, CasUntil string

	// Semaphore reads the live rows of a semaphore: its marker row
	// (@marker) and its slots, the names @name#0 … @name#(@slots-1), each
	// found through the primary key.
	Semaphore string
	// SemaphoreFree reads what an acquisition needs of a semaphore: the
	// live marker's locked_by, as the row (-1, locked_by), then up to
	// @limit free slots (no live row), as rows (i, ''), in random order.
	SemaphoreFree string

	Clean string // deletes up to @limit expired rows
	Reset string // deletes every row

	// FenceBump raises the high-water mark of the name's fence bucket;
	// NoWait locks the name's row or gives up at once; FenceBumpBounded is
	// FenceBump waiting 1 s at most (TiDB).
	FenceBump, NoWait, FenceBumpBounded string

	// Guard is a write on the name's live row held by @token, run inside
	// the caller's transaction (Manager.Guard): it holds the row until the
	// transaction ends, and is certified on Galera and checked at commit on
	// TiDB. It always changes updated_at, so that MySQL's rows affected (the
	// changed rows) is 1 exactly when the lock is held. GuardMiss reads the
	// name's row, live or not, after a guard found none: token, holder,
	// LiveFlag.
	Guard, GuardMiss string
}

// Forms are the other texts a compiled statement is sent as (empty: as
// it is): Synced on a Galera node, Bounded giving up lock waits after the
// bound, BoundedSynced both; the Tx forms in one of lockmgr's own
// transactions, whose waits are bounded less tightly.
type Forms struct {
	Synced, Bounded, BoundedSynced string
	TxBounded, TxBoundedSynced     string
}

// Text is the form to send: synced on a Galera node, bounded where
// bounded, or in one of lockmgr's own transactions (ownTx); plain when
// the statement has no such form.
func (f Forms) Text(plain string, synced, bounded, ownTx bool) string {
	switch {
	case f.Bounded != "" && ownTx && synced:
		return f.TxBoundedSynced
	case f.Bounded != "" && ownTx:
		return f.TxBounded
	case f.Bounded != "" && bounded && synced:
		return f.BoundedSynced
	case f.Bounded != "" && bounded:
		return f.Bounded
	case synced && f.Synced != "":
		return f.Synced
	}
	return plain
}

// Table is one lock table as its statements name it.
type Table struct {
	Given  string // as the Manager names it: "locks" or "schema.locks"
	Name   string // the lock table, quoted
	Fences string // its side table of fence high-water marks, quoted
	// Bound is how long a bounded statement waits for another
	// transaction's lock (lockmgr's lockWaitBound).
	Bound time.Duration
}

// Schema is the schema part of t's name, or nil.
func (t Table) Schema() any {
	if i := strings.IndexByte(t.Given, '.'); i >= 0 {
		return t.Given[:i]
	}
	return nil
}

// Bare is t's name without its schema.
func (t Table) Bare() string { return t.Given[strings.IndexByte(t.Given, '.')+1:] }

// FenceBuckets is how many fence buckets a lock table's side table holds
// (PostgreSQL, MySQL): an acquisition locks the one its name hashes to.
const FenceBuckets = "1024" // = 32 × 32

// sql makes a statement written over several lines one line, with single
// spaces, and names t's tables in it: {table}, {fences}, {lock_timeout}.
func (t Table) sql(text string) string {
	return strings.NewReplacer("{table}", t.Name, "{fences}", t.Fences, "{lock_timeout}", t.lockTimeout(),
		"{buckets}", FenceBuckets).Replace(strings.Join(strings.Fields(text), " "))
}

// lockTimeout is t.Bound as PostgreSQL's lock_timeout reads it ("50ms").
func (t Table) lockTimeout() string { return ms(t.Bound) + "ms" }

// guardMiss sets GuardMiss, which reads whether the row is live by live.
func (t Table) guardMiss(s *Statements, live string) {
	s.GuardMiss = t.sql(`SELECT COALESCE(token, ''), COALESCE(locked_by, ''), CASE WHEN ` + live + ` THEN 1 ELSE 0 END
		FROM {table} WHERE name = @name`)
}

// clientAddTime sets ReadUntil and CasUntil, which only SQLite runs, but
// every engine has had compiled.
func (t Table) clientAddTime(s *Statements) {
	s.ReadUntil = t.sql(`SELECT locked_until || '' FROM {table} WHERE name = @name AND token = @token`)
	s.CasUntil = t.sql(`
		UPDATE {table} SET locked_until = @until, updated_at = @now
		WHERE name = @name AND token = @token AND locked_until = @old`)
}
