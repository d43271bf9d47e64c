package engine

import (
	"context"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// Postgres is PostgreSQL, whose errors carry an SQLSTATE.
type Postgres struct{}

// Retryable: 40P01 (deadlock detected), 40001 (serialization failure).
func (Postgres) Retryable(err error, _ bool) bool {
	m, _ := byState(err, "40P01", "40001")
	return m
}

// LockWaitTimeout: 55P03 (lock_not_available: lock_timeout, NOWAIT).
func (Postgres) LockWaitTimeout(err error) bool {
	m, _ := byState(err, "55P03")
	return m
}

// LockBusy: 55P03 (lock_not_available).
func (Postgres) LockBusy(err error) bool {
	m, _ := byState(err, "55P03")
	return m
}

// SchemaShaped: undefined column, undefined table, no unique key for ON
// CONFLICT, value too long.
func (Postgres) SchemaShaped(err error) bool {
	m, _ := byState(err, pgSchemaStates...)
	return m
}

// pgSchemaStates are the SQLSTATEs SchemaShaped reports on every engine.
var pgSchemaStates = []string{"42703", "42P01", "42P10", "22001"}

// pgMicros reads a timestamp column as microseconds since the epoch.
func pgMicros(col string) string { return "(extract(epoch from " + col + ") * 1000000)::bigint" }

// pgColumns reads a whole lock row, its times as microseconds.
var pgColumns = "name, COALESCE(locked_by, ''), lock_process, " + pgMicros("locked_until") + ", token, fence, " +
	pgMicros("created_at") + ", " + pgMicros("updated_at")

// pgLive is true for a row that has not expired by the database's clock.
const pgLive = `(locked_until IS NULL OR locked_until > statement_timestamp())`

// pgBound sets lock_timeout for the rest of the statement's transaction
// when @bounded; it is evaluated in a row source or a filter that comes
// before any lock the statement takes.
const pgBound = `(NOT @bounded OR set_config('lock_timeout', '{lock_timeout}', true) <> '')`

// pgAcquire is the acquisition: it raises the high-water mark of the
// name's fence bucket and makes it the new row's fence (f.hwm), then
// inserts the row or takes over an expired one.
var pgAcquire = `
	WITH f AS (INSERT INTO {fences} AS h (id, hwm)
		SELECT (hashtext(@name) & ({buckets} - 1)), (extract(epoch from clock_timestamp()) * 1000000)::bigint
		FROM (SELECT 1 WHERE ` + pgBound + `) bound
		ON CONFLICT (id) DO UPDATE SET hwm = GREATEST(h.hwm + 1, EXCLUDED.hwm) RETURNING hwm)
	INSERT INTO {table} AS l (name, locked_by, lock_process, locked_until, token, fence, created_at, updated_at)
	SELECT @name, @by, @pid, statement_timestamp() + @micros::bigint * interval '1 microsecond', @token,
		f.hwm, statement_timestamp(), statement_timestamp() FROM f
	ON CONFLICT (name) DO UPDATE SET locked_by = EXCLUDED.locked_by, lock_process = EXCLUDED.lock_process,
		locked_until = EXCLUDED.locked_until, token = EXCLUDED.token, fence = GREATEST(l.fence + 1, EXCLUDED.fence),
		created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at
	WHERE l.locked_until <= statement_timestamp()
	RETURNING token, fence, ` + pgMicros("locked_until") + `, ` + pgMicros("created_at")

// Statements are PostgreSQL's. Expiry is judged by the database's clock
// (statement_timestamp()) and times are read back as microseconds.
//
// An acquisition first raises the high-water mark of its name's bucket in
// the side table, in the same statement, and makes it the new row's fence
// (f.hwm); the bucket row's lock, held until commit, orders the
// acquisitions of one name. Its row source evaluates the lock-wait bound
// before the upsert takes any lock.
func (Postgres) Statements(t Table) Statements {
	s := Statements{
		Columns: pgColumns,
		Acquire: t.sql(pgAcquire),
		ReadBack: t.sql(`SELECT token, fence, ` + pgMicros("locked_until") + `, ` + pgMicros("created_at") +
			` FROM {table} WHERE name = @name AND token = @token`),
		ReleaseCounts: true,
		LiveFlag:      `CASE WHEN ` + pgLive + ` THEN 1 ELSE 0 END`,
		IsLocked:      t.sql(`SELECT COUNT(*) FROM {table} WHERE name = @name AND ` + pgLive),
		Get:           t.sql(`SELECT ` + pgColumns + ` FROM {table} WHERE name = @name AND ` + pgLive),
		List:          t.sql(`SELECT ` + pgColumns + ` FROM {table} WHERE ` + pgLive + ` ORDER BY name LIMIT @limit`),
		ListAfter: t.sql(`SELECT ` + pgColumns + ` FROM {table}
			WHERE name > @after AND ` + pgLive + ` ORDER BY name LIMIT @limit`),
		RenewMax: t.sql(pgRenew(`GREATEST(locked_until, statement_timestamp() + @micros::bigint * interval '1 microsecond')`)),
		RenewAdd: t.sql(pgRenew(`GREATEST(locked_until, statement_timestamp()) + @micros::bigint * interval '1 microsecond'`)),
		// Rows another transaction holds (an acquisition taking one over) are
		// skipped, not waited for. = ANY(ARRAY(…)) finds the batch's names
		// through the primary key; IN (…) would hash-join a scan of the table.
		Clean: t.sql(`
			DELETE FROM {table} WHERE name = ANY(ARRAY(SELECT name FROM {table} WHERE locked_until <= statement_timestamp() AND ` + pgBound + `
				LIMIT @limit FOR UPDATE SKIP LOCKED))`),
		Reset: t.sql(`DELETE FROM {table} WHERE true AND ` + pgBound),
		ReleaseHold: t.sql(`
			UPDATE {table} SET locked_until = ` + pgHeldUntil + `, updated_at = statement_timestamp()
			WHERE name = @name AND token = @token AND ` + pgHeldUntil + ` > statement_timestamp() AND ` + pgBound),
		Semaphore: t.sql(`SELECT ` + pgColumns + ` FROM {table}
			WHERE name = ANY(ARRAY(SELECT @name::text || '#' || g FROM generate_series(0, @slots::int - 1) g) || @marker::text)
			AND ` + pgLive),
		SemaphoreFree: t.sql(`SELECT -1, COALESCE(locked_by, '') FROM {table} WHERE name = @marker::text AND ` + pgLive + `
			UNION ALL (SELECT g, '' FROM generate_series(0, @slots::int - 1) g
				WHERE NOT EXISTS (SELECT 1 FROM {table} WHERE name = @name::text || '#' || g AND ` + pgLive + `)
				ORDER BY random() LIMIT @limit)`),
	}
	own, named := `name = @name AND token = @token AND `+pgBound, `name = @name AND `+pgBound
	s.Release, s.ReleaseNotify, s.ReleaseWatched = t.sql(pgDelete(own, "")), t.sql(pgDelete(own, pgNotifyAlways)),
		t.sql(pgDelete(own, pgNotifyIfWatched))
	s.Unlock, s.UnlockNotify, s.UnlockWatched = t.sql(pgDelete(named, "")), t.sql(pgDelete(named, pgNotifyAlways)),
		t.sql(pgDelete(named, pgNotifyIfWatched))
	// A guard's UPDATE waits for a transaction that holds the row (an
	// acquisition taking it over), then reads the row as that one left it.
	s.Guard = t.sql(`UPDATE {table} SET updated_at = GREATEST(statement_timestamp(), updated_at + interval '1 microsecond')
		WHERE name = @name AND token = @token AND ` + pgLive)
	t.guardMiss(&s, pgLive)
	t.clientAddTime(&s)
	return s
}

// pgHeldUntil is the end of a HoldAtLeast: the acquisition plus @hold.
const pgHeldUntil = `created_at + @hold::bigint * interval '1 microsecond'`

// pgRenew is the owner-checked renewal to the expiry extended: never
// shortening a lock and keeping a never-expiring one so (∞ + d = ∞); a
// renewal with no expiry (@micros NULL) makes the lock never expire.
func pgRenew(extended string) string {
	return `UPDATE {table}
		SET locked_until = CASE WHEN locked_until IS NULL OR @micros::bigint IS NULL THEN NULL ELSE ` + extended + ` END,
			updated_at = statement_timestamp()
		WHERE name = @name AND token = @token AND ` + pgBound + `
		RETURNING ` + pgMicros("locked_until")
}

// pgDelete is a release of the rows where finds: it returns the count of
// rows it deleted, commits without waiting for the disk where it may
// (pgLazyCommit), and announces itself as notify says.
func pgDelete(where, notify string) string {
	return `WITH d AS (DELETE FROM {table} WHERE ` + where + ` RETURNING name, locked_until)
		SELECT count(*) FROM d ` + pgLazyCommit + notify
}

// pgLazyCommit lets a release commit without waiting for its WAL to reach
// the disk (synchronous_commit off, for this transaction only) when @lazy
// is true (not inside the caller's transaction) and the lock had an
// expiry. A crash of the server within a fraction of a second after such a
// release can undo it: the lock is then held again until it expires, which
// is what a holder that crashed before releasing costs too; no two holders
// can come of it, since an acquisition's own commit waits for the disk,
// and the WAL before it, this release included. A lock that never expires
// is released durably, as it would otherwise stay held for good.
const pgLazyCommit = `
	LEFT JOIN LATERAL (SELECT set_config('synchronous_commit', 'off', true)
		WHERE @lazy AND d.locked_until IS NOT NULL) lazy ON true`

// pgNotifyAlways joins a deleted row d to a NOTIFY of its name.
const pgNotifyAlways = `
	LEFT JOIN LATERAL (SELECT pg_notify(@channel, @origin || d.name)) n ON true`

// pgNotifyIfWatched joins a deleted row d to a NOTIFY of its name sent
// only when some session holds the shared advisory lock a Watcher takes
// while its process waits for the name: the exclusive lock is then not to
// be had. When it is, it is held until the release commits (the end of its
// own statement, outside WithTx), and let go with the transaction whatever
// happens to it; advisory locks live in memory, so the test costs no I/O
// and no NOTIFY, which PostgreSQL serialises across all the commits that
// send one.
const pgNotifyIfWatched = `
	LEFT JOIN LATERAL (SELECT pg_notify(@channel, @origin || d.name)
		WHERE NOT pg_try_advisory_xact_lock(hashtext(@channel), hashtext(d.name))) n ON true`

// Forms: PostgreSQL's statements bound their lock waits themselves
// (@bounded).
func (Postgres) Forms(string, Stmt, bool) Forms { return noForms() }

// TimeoutKeepsTx: no, a lock_timeout aborts the whole transaction.
func (Postgres) TimeoutKeepsTx() bool { return false }

// Quote quotes an identifier.
func (Postgres) Quote(ident string) string { return `"` + ident + `"` }

// QuoteIndex quotes an index name, a schema's dot made an underscore.
func (Postgres) QuoteIndex(name string) string { return `"` + strings.ReplaceAll(name, ".", "_") + `"` }

// Placeholder is pgx's $i.
func (Postgres) Placeholder(i int) string { return "$" + strconv.Itoa(i) }

// Prepares: no, pgx caches its prepared statements itself.
func (Postgres) Prepares(bool) bool { return false }

// Times: expiry is judged by the database's clock.
func (Postgres) Times(_ func() time.Time, expires time.Duration) Times { return serverTimes(expires) }

// Acquire is one statement that returns the row.
func (Postgres) Acquire(ctx context.Context, r Runner, _ Times) (Acquired, bool, error) {
	return acquireReturning(ctx, r)
}

// Renew is one statement that returns the new expiry.
func (Postgres) Renew(ctx context.Context, r Runner, addTime bool, _ time.Duration) (any, bool, error) {
	return renewReturning(ctx, r, addTime)
}

// Release: the statement returns the count of rows it deleted as a row.
func (Postgres) Release(ctx context.Context, r Runner, s Stmt) (n int64, err error) {
	_, err = r.Query(ctx, s, &n)
	return n, err
}

// Bounded is p: the statement bounds its own waits (@bounded).
func (Postgres) Bounded(_ context.Context, p gorm.ConnPool, _ time.Duration) (gorm.ConnPool, func(error) error, error) {
	return p, nil, nil
}

// InTx sets lock_timeout to the bound until the transaction ends, where own.
func (Postgres) InTx(_ context.Context, tx *gorm.DB, t Table, own bool, fn func() error) error {
	if own {
		if err := tx.Exec("SELECT set_config('lock_timeout', ?, true)", t.lockTimeout()).Error; err != nil {
			return err
		}
	}
	return fn()
}

// RowLocking is FOR UPDATE, bounded by the transaction's lock_timeout.
func (Postgres) RowLocking(bool) clause.Locking { return clause.Locking{Strength: "UPDATE"} }

// Synced: PostgreSQL has no synced forms.
func (Postgres) Synced(context.Context, Conn) bool { return false }

// CatchUp: nothing to catch up with.
func (Postgres) CatchUp(context.Context, Conn) error { return nil }

// Version asks: CockroachDB and YugabyteDB answer the protocol as
// PostgreSQL, and GORM's driver records no version.
func (Postgres) Version(_ context.Context, db *gorm.DB) (string, error) {
	var version string
	err := db.Raw("SELECT version()").Scan(&version).Error
	return version, err
}

// TooLong: 22001.
func (Postgres) TooLong(err error) bool { return tooLong(err) }
