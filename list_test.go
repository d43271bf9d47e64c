package lockmgr_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gormlock/lockmgr"
)

// insertRows writes locks straight into e's table, live ones expiring in
// an hour and expired ones an hour ago by the database's clock, many to a
// statement.
func (e *env) insertRows(live, expired []string) {
	e.t.Helper()
	clock := map[string][3]string{ // now, an hour ahead, an hour ago
		"postgres": {"statement_timestamp()", "statement_timestamp() + interval '1 hour'", "statement_timestamp() - interval '1 hour'"},
		"mysql":    {"UTC_TIMESTAMP(6)", "UTC_TIMESTAMP(6) + INTERVAL 1 HOUR", "UTC_TIMESTAMP(6) - INTERVAL 1 HOUR"},
		"sqlite": {"strftime('%Y-%m-%d %H:%M:%f', 'now')", "strftime('%Y-%m-%d %H:%M:%f', 'now', '+1 hour')",
			"strftime('%Y-%m-%d %H:%M:%f', 'now', '-1 hour')"},
	}[e.kind]
	write := func(names []string, until string) {
		for chunk := range slices.Chunk(names, 200) {
			row := "(?, 'bulk', " + until + ", " + clock[0] + ", " + clock[0] + ")"
			rows := strings.Repeat(row+", ", len(chunk)-1) + row
			args := make([]any, len(chunk))
			for i, n := range chunk {
				args[i] = n
			}
			q := "INSERT INTO " + e.table + " (name, locked_by, locked_until, created_at, updated_at) VALUES " + rows
			require.NoError(e.t, e.db.Exec(q, args...).Error)
		}
	}
	write(live, clock[1])
	write(expired, clock[2])
}

// requireListed checks that List returns exactly want, in byte order.
func requireListed(t *testing.T, m *lockmgr.Manager, e *env, want []string) {
	t.Helper()
	locks, err := m.List(e.ctx)
	require.NoError(t, err)
	got := make([]string, len(locks))
	for i, l := range locks {
		got[i] = l.Name
	}
	want = slices.Clone(want)
	slices.Sort(want) // Go compares strings byte for byte
	require.Equal(t, want, got, "List: every live lock once, in byte order")
}

// TestListReadsInPages: List of more locks than a page reads them with
// several bounded statements, never the whole table in one, and returns
// each live lock once.
func TestListReadsInPages(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		var live, expired []string
		for i := range 2600 {
			live = append(live, fmt.Sprintf("job:%05d", i))
			if i%3 == 0 {
				expired = append(expired, fmt.Sprintf("job:%05d.old", i))
			}
		}
		e.insertRows(live, expired)
		m, c := e.countingManager()
		_, err := m.IsLocked(e.ctx, "warm-up") // the first call checks the table
		require.NoError(t, err)
		c.take()
		requireListed(t, m, e, live)
		stmts := c.take()
		assert.GreaterOrEqual(t, len(stmts), 3, "2600 locks are read in pages")
		for _, q := range stmts {
			assert.Contains(t, q, "LIMIT", "every statement of List is bounded")
		}
	})
}

// TestListPagesAcrossCollations: pages follow the index, whose order on
// PostgreSQL is the column's collation (here ICU's, where "a" < "A" and
// punctuation weighs differently); List still returns every live name once,
// in byte order, whatever the page size, with expired rows among them.
func TestListPagesAcrossCollations(t *testing.T) {
	live := []string{"a", "A", "b", "B", "aa", "aA", "Aa", "a b", "a_b", "a-b", "_a", "-a", "a.", "é", "e", "E", "e\u0301",
		"f", "ß", "ss", "SS", "z", "Z", "Å", "ä", "æ", "œ", "0", "9", "~", "日本", "😀", "lock:1", "lock:10", "lock:2"}
	expired := []string{"a0", "A0", "_0", "-0", "é0", "ss0", "zz", "ZZ"}
	eachDB(t, func(t *testing.T, e *env) {
		if e.kind == "postgres" {
			var icu int64
			require.NoError(t, e.db.Raw(`SELECT count(*) FROM pg_collation WHERE collname = 'en-x-icu'`).Scan(&icu).Error)
			if icu > 0 {
				require.NoError(t, e.db.Exec(`ALTER TABLE `+e.table+` ALTER COLUMN name TYPE varchar(255) COLLATE "en-x-icu"`).Error)
			}
		}
		e.insertRows(live, expired)
		for _, page := range []int{1, 2, 3, 5, len(live), len(live) + 1, 1000} {
			t.Run(fmt.Sprint(page), func(t *testing.T) {
				defer lockmgr.SetListPage(page)()
				requireListed(t, e.m, e, live)
			})
		}
	})
}
