package main

import (
	"context"
	"fmt"
	"time"
)

// fillChunk bounds one bulk INSERT … SELECT, to keep transactions and undo
// logs moderate.
const fillChunk = 100_000

// fillRows inserts rows numbered from..to (inclusive) with one bulk
// statement per chunk: names "fill-00000001", …; even rows live for a day,
// odd rows expired a day ago. Both lockmgr's and the floor's tables have
// these eight columns.
func fillRows(ctx context.Context, t *target, table string, from, to int) error {
	now := time.Now()
	live, expired, at := t.timeArg(now.Add(24*time.Hour)), t.timeArg(now.Add(-24*time.Hour)), t.timeArg(now)
	q := fillSQL(t, table)
	for lo := from; lo <= to; lo += fillChunk {
		hi := min(lo+fillChunk-1, to)
		var err error
		switch t.kind {
		case dbPostgres:
			_, err = t.sqlDB.ExecContext(ctx, q, live, expired, at, lo, hi)
		case dbMySQL:
			_, err = t.sqlDB.ExecContext(ctx, q, live, expired, at, at, lo, hi)
		default:
			_, err = t.sqlDB.ExecContext(ctx, q, lo, hi, live, expired, at)
		}
		if err != nil {
			return fmt.Errorf("rows %d..%d: %w", lo, hi, err)
		}
	}
	return nil
}

const fillCols = `(name, locked_by, lock_process, locked_until, token, fence, created_at, updated_at)`

// fillSQL is one bulk INSERT … SELECT per database: generate_series on
// PostgreSQL, a cross join of digits on MariaDB, a recursive CTE on SQLite.
func fillSQL(t *target, table string) string {
	q := t.quote(table)
	switch t.kind {
	case dbPostgres:
		return `INSERT INTO ` + q + ` ` + fillCols + `
SELECT 'fill-' || lpad(g::text, 8, '0'), 'bench-fill', 1,
	CASE WHEN g % 2 = 0 THEN $1::timestamptz ELSE $2::timestamptz END,
	md5(g::text), g, $3::timestamptz, $3::timestamptz
FROM generate_series($4::bigint, $5::bigint) AS g`
	case dbMySQL:
		digits := `(SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4
	UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9)`
		// Five digits number the chunk's 100 000 rows (fillChunk).
		return `INSERT INTO ` + q + ` ` + fillCols + `
SELECT CONCAT('fill-', LPAD(n, 8, '0')), 'bench-fill', 1, IF(n % 2 = 0, ?, ?), MD5(n), n, ?, ?
FROM (SELECT ? + d0.d + 10*d1.d + 100*d2.d + 1000*d3.d + 10000*d4.d AS n
	FROM ` + digits + ` d0, ` + digits + ` d1, ` + digits + ` d2, ` + digits + ` d3, ` + digits + ` d4) s
WHERE n <= ?`
	default:
		return `WITH RECURSIVE s(n) AS (SELECT ?1 UNION ALL SELECT n + 1 FROM s WHERE n < ?2)
INSERT INTO ` + q + ` ` + fillCols + `
SELECT printf('fill-%08d', n), 'bench-fill', 1, CASE WHEN n % 2 = 0 THEN ?3 ELSE ?4 END,
	hex(randomblob(16)), n, ?5, ?5
FROM s`
	}
}
