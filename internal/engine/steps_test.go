package engine

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestDetect(t *testing.T) {
	assert.Equal(t, Server{Returning: true, NameCollation: "utf8mb4_nopad_bin"}, Detect("postgres", "16.1"))
	assert.Equal(t, Server{Returning: true, NameCollation: "utf8mb4_nopad_bin"}, Detect("mysql", ""), "no version: MariaDB 10.5+ without Galera")
	assert.Equal(t, Server{Returning: true, MariaDB: true, NameCollation: "utf8mb4_nopad_bin"}, Detect("mysql", "10.11.6-MariaDB-log"))
	assert.Equal(t, Server{MariaDB: true, NameCollation: "utf8mb4_nopad_bin"}, Detect("mysql", "10.4.32-MariaDB"))
	assert.Equal(t, Server{NameCollation: "utf8mb4_0900_bin"}, Detect("mysql", "8.0.36"))
	assert.Equal(t, Server{TiDB: true, NameCollation: "utf8mb4_0900_bin"}, Detect("mysql", "8.0.11-TiDB-v7.5.1"))
}

func TestFormsText(t *testing.T) {
	my := For("mysql", Server{Returning: true, MariaDB: true}).(MySQL)
	acq := my.Forms("INSERT x", StAcquire, false)
	assert.Equal(t, "INSERT x", acq.Text("INSERT x", false, false, false), "unbounded, not on Galera: as it is")
	assert.Equal(t, "SET STATEMENT innodb_lock_wait_timeout=0 FOR INSERT x", acq.Text("", false, true, false))
	assert.Equal(t, "SET STATEMENT wsrep_sync_wait=7, innodb_lock_wait_timeout=0 FOR INSERT x", acq.Text("", true, true, false))
	assert.Equal(t, "SET STATEMENT innodb_lock_wait_timeout=1 FOR INSERT x", acq.Text("", false, true, true), "lockmgr's own transaction waits 1 s")
	assert.Equal(t, "SET STATEMENT wsrep_sync_wait=7 FOR INSERT x", acq.Text("", true, false, false))
	rel := my.Forms("DELETE x", StRelease, false)
	assert.Equal(t, "SET STATEMENT innodb_lock_wait_timeout=1 FOR DELETE x", rel.Text("", false, true, false), "a holder's statement queues for the row")
	get := my.Forms("SELECT x", StGet, true)
	assert.Equal(t, "SELECT x", get.Text("SELECT x", false, true, false), "a read is never bounded")
	assert.Equal(t, Forms{}, my.Forms("x", StLiveFlag, false), "an expression has no forms")
	assert.Equal(t, Forms{}, For("mysql", Server{}).Forms("DELETE x", StRelease, false), "MySQL 8: none")
	assert.Equal(t, Forms{}, For("postgres", Server{}).Forms("DELETE x", StRelease, false))
}

func TestSQLiteTimes(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.FixedZone("x", 3600))
	tm := For("sqlite", Server{}).Times(func() time.Time { return at }, 1500*time.Nanosecond)
	assert.Equal(t, "2026-01-02 02:04:05.123456", tm.Now)
	assert.Equal(t, int64(1767319445123456), tm.Fence)
	assert.Equal(t, "2026-01-02 02:04:05.123458", tm.Until, "now+1.5µs rounded up to a whole microsecond")
	assert.Nil(t, tm.Micros)
	forever := For("sqlite", Server{}).Times(func() time.Time { return at }, 0)
	assert.Nil(t, forever.Until)
	assert.True(t, forever.ClientUntil.IsZero())
	pg := For("postgres", Server{}).Times(nil, 1500*time.Nanosecond)
	assert.Equal(t, Times{Micros: int64(2)}, pg, "the database's clock: only the expiry, rounded up")
}

type result struct{ id int64 }

func (r result) LastInsertId() (int64, error) { return r.id, nil }
func (r result) RowsAffected() (int64, error) { return 0, errors.New("unused") }

func TestLastInsertUntil(t *testing.T) {
	until, found, err := lastInsertUntil(result{0})
	assert.NoError(t, err)
	assert.False(t, found, "0: no row matched")
	assert.Nil(t, until)
	until, found, _ = lastInsertUntil(result{1})
	assert.True(t, found)
	assert.Nil(t, until, "1: never expires")
	until, found, _ = lastInsertUntil(result{1767319445123456})
	assert.True(t, found)
	assert.Equal(t, int64(1767319445123456), until)
}

func TestTableNames(t *testing.T) {
	tb := Table{Given: "app.locks"}
	assert.Equal(t, "app", tb.Schema())
	assert.Equal(t, "locks", tb.Bare())
	assert.Nil(t, Table{Given: "locks"}.Schema())
	assert.Equal(t, []string{"l", "l_fence", "idx_l_locked_until", "l_lmnew", "l_lmold"}, For("mysql", Server{}).DerivedNames("l"))
	assert.Equal(t, 63, For("postgres", Server{}).IdentLimit())
	assert.Equal(t, 0, For("sqlite", Server{}).IdentLimit())
	assert.Equal(t, "$3", For("postgres", Server{}).Placeholder(3))
	assert.Equal(t, "?", For("mysql", Server{}).Placeholder(3))
	long := Table{Given: "t", Name: "`abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghij`"}
	assert.Len(t, sideName(long, "_fence_bi"), 64, "shortened with a hash past MySQL's 64 characters")
}
