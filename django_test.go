package lockmgr_test

import (
	"fmt"
	"strings"
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
			assert.InDelta(t, time.Until(now.Add(time.Hour)).Seconds(), secondsLeft(t, &locks[1]), 5, "Django's UTC expiry reads back right")
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
			assert.InDelta(t, time.Until(now.Add(2*time.Hour)).Seconds(), secondsLeft(t, l), 5)
		})
	}
}

// djangoColumns are the columns of django-lockmgr's model: Django's
// `migrate --fake-initial` fakes the initial migration when the table and
// every one of these exist.
var djangoColumns = []string{"name", "locked_by", "lock_process", "locked_until", "created_at", "updated_at"}

// djangoRebuild is what Django 3.2's SQLite schema editor runs for an
// AlterField such as django-lockmgr's migration 0002: it remakes the table
// from the model (only Django's columns, no index or trigger of lockmgr's),
// copies the rows and renames it into place.
const djangoRebuild = `CREATE TABLE "new__%[1]s" ("name" varchar(100) NOT NULL PRIMARY KEY, "locked_by" varchar(100) NULL,
	"lock_process" integer NULL, "locked_until" datetime NULL, "created_at" datetime NOT NULL, "updated_at" datetime NOT NULL);
INSERT INTO "new__%[1]s" ("name", "locked_by", "lock_process", "locked_until", "created_at", "updated_at")
	SELECT "name", "locked_by", "lock_process", "locked_until", "created_at", "updated_at" FROM "%[1]s";
DROP TABLE "%[1]s";
ALTER TABLE "new__%[1]s" RENAME TO "%[1]s"`

// TestGoFirstThenDjango: lockmgr creates the table, then Django's
// `manage.py migrate lockmgr --fake-initial` runs (on SQLite it rebuilds
// the table), then `lockmgr migrate` again. A Manager that was running all
// along keeps working: it notices the rebuilt table and completes it.
func TestGoFirstThenDjango(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		held := e.lock("go-held", lockmgr.Expires(time.Hour))
		first := e.lock("fenced")
		require.NoError(t, e.m.Release(e.ctx, first))
		for _, c := range djangoColumns {
			require.True(t, e.db.Migrator().HasColumn(e.table, c), "--fake-initial needs column %s", c)
		}
		if e.kind == "sqlite" {
			for _, stmt := range strings.Split(fmt.Sprintf(djangoRebuild, e.table), ";\n") {
				require.NoError(t, e.db.Exec(stmt).Error)
			}
			require.False(t, e.db.Migrator().HasColumn(e.table, "token"), "the rebuild dropped lockmgr's columns")
		}
		insert := fmt.Sprintf("INSERT INTO %s (name, locked_by, lock_process, locked_until, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)", e.table)
		now := time.Now()
		require.NoError(t, e.db.Exec(insert, "django-held", "django-host", 7, djangoTime(e.kind, now.Add(time.Hour)), djangoTime(e.kind, now), djangoTime(e.kind, now)).Error)

		assert.True(t, djangoLocked(e, "go-held"), "Django sees lockmgr's lock")
		assert.True(t, e.isLocked("django-held"), "the running Manager sees Django's lock")
		assert.True(t, e.isLocked("go-held"))
		if e.kind == "sqlite" { // a running Manager changes no table: it names the fix
			_, err := e.m.GetLock(e.ctx, "fenced")
			require.ErrorIs(t, err, lockmgr.ErrSchema)
			assert.Contains(t, err.Error(), "m.AutoMigrate(ctx) or `lockmgr migrate`")
			require.False(t, e.db.Migrator().HasColumn(e.table, "token"), "no DDL at run time")
			require.NoError(t, e.m.AutoMigrate(e.ctx))
		}
		second := e.lock("fenced")
		assert.Greater(t, second.Fence, first.Fence, "fences still grow")
		err := e.m.Release(e.ctx, held)
		if e.kind == "sqlite" {
			require.ErrorIs(t, err, lockmgr.ErrNotHeld, "the rebuild dropped the holder's token")
		} else {
			require.NoError(t, err)
		}

		require.NoError(t, e.m.AutoMigrate(e.ctx), "then lockmgr migrate again")
		_, err = e.m.GetLock(e.ctx, "django-held")
		require.ErrorIs(t, err, lockmgr.ErrLocked)
		checkLockTable(e)
	})
}

// TestDjangoTable255: a 255-byte name on a table django-lockmgr created
// (varchar(100)), after each way of setting up.
func TestDjangoTable255(t *testing.T) {
	long := strings.Repeat("x", lockmgr.MaxNameLen)
	for _, b := range backends() {
		for _, how := range []string{"AutoMigrate", "first use"} {
			t.Run(b.name+"/"+how, func(t *testing.T) {
				e := bareEnv(t, b)
				require.NoError(t, e.db.Exec(fmt.Sprintf(djangoDDL[b.dialect()], e.table)).Error)
				e.m = e.manager()
				if how == "AutoMigrate" {
					require.NoError(t, e.m.AutoMigrate(e.ctx))
				} else {
					tidbNeedsMigrate(e, b)
				}
				l := e.lock(long)
				got, err := e.m.Get(e.ctx, long)
				require.NoError(t, err)
				assert.Equal(t, l.Token, got.Token)
				assert.True(t, djangoLocked(e, long), "Django reads the 255-byte name")
			})
		}
	}
}
