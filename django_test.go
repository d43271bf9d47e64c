package lockmgr_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gormlock/lockmgr"
)

// djangoDDL is the table django-lockmgr 2.0 (Django 3.2) creates.
var djangoDDL = map[string]string{
	"postgres": `CREATE TABLE %s ("name" varchar(100) NOT NULL PRIMARY KEY, "locked_by" varchar(100) NULL,
		"lock_process" integer NULL, "locked_until" timestamp with time zone NULL,
		"created_at" timestamp with time zone NOT NULL, "updated_at" timestamp with time zone NOT NULL)`,
	"mysql": "CREATE TABLE %s (`name` varchar(100) NOT NULL PRIMARY KEY, `locked_by` varchar(100) NULL, " +
		"`lock_process` integer NULL, `locked_until` datetime(6) NULL, `created_at` datetime(6) NOT NULL, " +
		"`updated_at` datetime(6) NOT NULL) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
	"sqlite": `CREATE TABLE %s ("name" varchar(100) NOT NULL PRIMARY KEY, "locked_by" varchar(100) NULL,
		"lock_process" integer NULL, "locked_until" datetime NULL, "created_at" datetime NOT NULL,
		"updated_at" datetime NOT NULL)`,
}

// djangoTime renders t as Django stores it: UTC, microseconds, and on
// SQLite no fraction at all when it is zero.
func djangoTime(kind string, t time.Time) any {
	t = t.UTC()
	switch kind {
	case "sqlite", "mysql":
		if t.Nanosecond() == 0 {
			return t.Format("2006-01-02 15:04:05")
		}
		return t.Format("2006-01-02 15:04:05.000000")
	}
	return t
}

// djangoLocked is django-lockmgr's is_locked as Django runs it: the
// current time computed in Python (here: Go), in UTC.
func djangoLocked(e *env, name string) bool {
	var n int64
	q := fmt.Sprintf("SELECT COUNT(*) FROM %s WHERE name = ? AND (locked_until IS NULL OR locked_until > ?)", e.table)
	require.NoError(e.t, e.db.Raw(q, name, djangoTime(e.kind, time.Now().Truncate(time.Microsecond))).Scan(&n).Error)
	return n > 0
}

func TestSharesDjangoTable(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			db := b.open(t)
			table := uniqueTable()
			t.Cleanup(func() { _ = db.Migrator().DropTable(table, table+"_fence") })
			require.NoError(t, db.Exec(fmt.Sprintf(djangoDDL[b.dialect()], table)).Error)
			e := &env{t: t, kind: b.dialect(), db: db, table: table, ctx: t.Context()}
			insert := fmt.Sprintf("INSERT INTO %s (name, locked_by, lock_process, locked_until, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)", table)
			now := time.Now().Truncate(time.Second) // Django's zero-fraction form on SQLite
			for name, until := range map[string]any{
				"django-live":    djangoTime(b.dialect(), now.Add(time.Hour)),
				"django-expired": djangoTime(b.dialect(), now.Add(-time.Hour)),
				"django-forever": nil,
			} {
				require.NoError(t, db.Exec(insert, name, "django-host", 42, until, djangoTime(b.dialect(), now), djangoTime(b.dialect(), now)).Error)
			}

			e.m = e.manager()
			require.NoError(t, e.m.AutoMigrate(e.ctx))
			require.NoError(t, e.m.AutoMigrate(e.ctx), "migrating twice is harmless")

			assert.True(t, e.isLocked("django-live"))
			assert.True(t, e.isLocked("django-forever"))
			assert.False(t, e.isLocked("django-expired"))
			_, err := e.m.GetLock(e.ctx, "django-live")
			require.ErrorIs(t, err, lockmgr.ErrLocked)
			locks, err := e.m.List(e.ctx)
			require.NoError(t, err)
			require.Len(t, locks, 2)
			assert.Equal(t, "django-host", locks[1].LockedBy)
			assert.InDelta(t, 3600, secondsLeft(t, &locks[1]), 5, "Django's UTC expiry reads back right")
			assert.Nil(t, locks[0].LockedUntil)

			took := e.lock("django-expired", lockmgr.Expires(time.Minute))
			assert.Positive(t, took.Fence)
			mine := e.lock("go-side", lockmgr.Expires(time.Minute))
			assert.True(t, djangoLocked(e, "go-side"), "Django sees lockmgr's lock")
			assert.True(t, djangoLocked(e, "django-expired"), "Django sees the takeover")
			require.NoError(t, e.m.Release(e.ctx, mine))
			assert.False(t, djangoLocked(e, "go-side"))

			// Byte-exact names after migrating Django's table.
			e.lock("Case")
			e.lock("case")
			e.lock("case ")
			assert.True(t, e.isLocked("Case"))

			// Django renewing by name (add time) keeps working on lockmgr's row.
			l, err := e.m.RenewLock(e.ctx, "django-live", lockmgr.Expires(time.Hour), lockmgr.AddTime())
			require.NoError(t, err)
			assert.InDelta(t, 7200, secondsLeft(t, l), 5)
		})
	}
}
