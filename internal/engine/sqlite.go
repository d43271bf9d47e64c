package engine

// SQLite is SQLite, whose driver's errors are its messages.
type SQLite struct{}

// Retryable: nothing. SQLite has no deadlocks to break, and a lock-wait
// timeout ("database is locked") is not repeated: another transaction
// holds the database's write lock (LockWaitTimeout).
func (SQLite) Retryable(err error, _ bool) bool {
	m, _ := byState(err, "40P01", "40001")
	return m
}

// LockWaitTimeout: the busy timeout ran out on the database's or a
// table's lock.
func (SQLite) LockWaitTimeout(err error) bool {
	if err == nil {
		return false
	}
	if m, ok := byState(err, "55P03"); ok {
		return m
	}
	return containsAny(err.Error(), "database is locked", "database table is locked")
}

// LockBusy: the busy timeout ran out.
func (SQLite) LockBusy(err error) bool {
	if err == nil {
		return false
	}
	if m, _ := byState(err, "55P03"); m {
		return true
	}
	return containsAny(err.Error(), "database is locked", "SQLITE_BUSY")
}

// SchemaShaped: no such table or column, or a table without the unique
// key ON CONFLICT names.
func (SQLite) SchemaShaped(err error) bool {
	if err == nil {
		return false
	}
	if m, _ := byState(err, pgSchemaStates...); m {
		return true
	}
	return containsAny(err.Error(), "no such table", "no such column", "has no column named", "ON CONFLICT clause does not match")
}

// sqliteHeldUntil is the end of a HoldAtLeast, the acquisition plus
// @hold microseconds, as UTC text. SQLite's date functions work in whole
// milliseconds (and round created_at's microseconds to the nearest one),
// so the hold is rounded up to a millisecond and one more is added: the
// lock is held at least as long as asked.
const sqliteHeldUntil = `(strftime('%Y-%m-%d %H:%M:%f', created_at, '+' || (((@hold + 1999) / 1000) / 1000.0) || ' seconds') || '000')`

// sqliteColumns reads times as the text they are stored as.
const sqliteColumns = `name, COALESCE(locked_by, ''), lock_process, locked_until, token, fence, created_at, updated_at`

// sqliteLive is true for a row that has not expired by @now, the client's
// clock as UTC text.
const sqliteLive = `(locked_until IS NULL OR locked_until > @now)`

// Statements are SQLite's. Times come from the client as UTC text (@now,
// @until), the form Django writes; an acquisition's fence is the side
// table's high-water mark plus one, read under SQLite's write lock, and at
// least the clock in microseconds (@fence): a fence from the clock alone
// could be taken before a wait for that lock, and so fall below one
// written (and deleted) meanwhile. AddTime renewals are done in the
// client (ReadUntil, CasUntil): SQLite's date functions work in whole
// milliseconds.
func (SQLite) Statements(t Table) Statements {
	s := Statements{
		Columns: sqliteColumns,
		Acquire: t.sql(`
			INSERT INTO {table} (name, locked_by, lock_process, locked_until, token, fence, created_at, updated_at)
			VALUES (@name, @by, @pid, @until, @token,
				MAX(@fence, COALESCE((SELECT hwm FROM {fences} WHERE id = 1), 0) + 1), @now, @now)
			ON CONFLICT (name) DO UPDATE SET locked_by = excluded.locked_by, lock_process = excluded.lock_process,
				locked_until = excluded.locked_until, token = excluded.token, fence = MAX(fence + 1, excluded.fence),
				created_at = excluded.created_at, updated_at = excluded.updated_at
			WHERE locked_until <= @now
			RETURNING token, fence`),
		ReadBack: t.sql(`SELECT token, fence, locked_until, created_at FROM {table} WHERE name = @name AND token = @token`),
		Release:  t.sql(`DELETE FROM {table} WHERE name = @name AND token = @token`),
		Unlock:   t.sql(`DELETE FROM {table} WHERE name = @name`),
		LiveFlag: `CASE WHEN ` + sqliteLive + ` THEN 1 ELSE 0 END`,
		IsLocked: t.sql(`SELECT COUNT(*) FROM {table} WHERE name = @name AND ` + sqliteLive),
		Get:      t.sql(`SELECT ` + sqliteColumns + ` FROM {table} WHERE name = @name AND ` + sqliteLive),
		List:     t.sql(`SELECT ` + sqliteColumns + ` FROM {table} WHERE ` + sqliteLive + ` ORDER BY name LIMIT @limit`),
		ListAfter: t.sql(`SELECT ` + sqliteColumns + ` FROM {table}
			WHERE name > @after AND ` + sqliteLive + ` ORDER BY name LIMIT @limit`),
		RenewMax: t.sql(`
			UPDATE {table} SET locked_until = CASE WHEN locked_until IS NULL OR @until IS NULL THEN NULL
				ELSE MAX(locked_until, @until) END, updated_at = @now
			WHERE name = @name AND token = @token
			RETURNING locked_until`),
		// By name, not rowid: a table may be WITHOUT ROWID.
		Clean: t.sql(`DELETE FROM {table} WHERE name IN (SELECT name FROM {table} WHERE locked_until <= @now LIMIT @limit)`),
		Reset: t.sql(`DELETE FROM {table} WHERE true`),
		ReleaseHold: t.sql(`UPDATE {table} SET locked_until = ` + sqliteHeldUntil + `, updated_at = @now
			WHERE name = @name AND token = @token AND ` + sqliteHeldUntil + ` > @now`),
		Semaphore: t.sql(`SELECT ` + sqliteColumns + ` FROM {table}
			WHERE (name IN (WITH RECURSIVE g (i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM g WHERE i + 1 < @slots)
				SELECT @name || '#' || i FROM g) OR name = @marker) AND ` + sqliteLive),
		SemaphoreFree: t.sql(`SELECT -1, COALESCE(locked_by, '') FROM {table} WHERE name = @marker AND ` + sqliteLive + `
			UNION ALL SELECT i, '' FROM (WITH RECURSIVE g (i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM g WHERE i + 1 < @slots)
				SELECT i FROM g WHERE NOT EXISTS (SELECT 1 FROM {table} WHERE name = @name || '#' || g.i AND ` + sqliteLive + `)
				ORDER BY random() LIMIT @limit)`),
	}
	t.clientAddTime(&s)
	return s
}
