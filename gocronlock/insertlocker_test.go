package gocronlock_test

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/go-co-op/gocron/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

// insertLocker locks a tick the way go-co-op/gocron-gorm-lock does (its
// module is not served by this machine's module proxy, so this is a
// re-creation from its documented behaviour, not its code): a plain INSERT
// of the job's name and an identifier of the tick — the replica's own
// clock truncated to a second — under a unique index, so that every
// contested tick is a duplicate-key error; Unlock marks the row finished,
// and rows stay (its clean-up deletes finished rows a day old).
type insertLocker struct {
	db    *gorm.DB
	table string
	clock skewed
}

func (l insertLocker) Lock(ctx context.Context, key string) (gocron.Lock, error) {
	id := l.clock.Now().Truncate(time.Second).Format("2006-01-02 15:04:05.000")
	res := l.db.WithContext(ctx).Exec("INSERT INTO "+l.table+" (job_name, job_identifier, status) VALUES (?, ?, 'RUNNING')", key, id)
	if res.Error != nil {
		return nil, res.Error
	}
	return insertLock{l, key, id}, nil
}

type insertLock struct {
	l       insertLocker
	key, id string
}

func (k insertLock) Unlock(ctx context.Context) error {
	return k.l.db.WithContext(ctx).Exec("UPDATE "+k.l.table+" SET status = 'FINISHED' WHERE job_name = ? AND job_identifier = ?",
		k.key, k.id).Error
}

// insertTable is the insertLocker's table beside the torture's lock table.
func insertTable(lockTable string) string { return lockTable + "_jobs" }

func newInsertLocker(db *gorm.DB) insertLocker {
	lagMS, _ := strconv.Atoi(os.Getenv(envSkew))
	return insertLocker{db: db, table: insertTable(os.Getenv(envTable)), clock: skewed{realClock, time.Duration(lagMS) * time.Millisecond}}
}

func (tt *torture) createInsertTable() {
	jobs := insertTable(tt.table)
	tt.t.Cleanup(func() { _ = tt.db.Migrator().DropTable(jobs) })
	require.NoError(tt.t, tt.db.Exec("CREATE TABLE "+jobs+
		" (job_name VARCHAR(255) NOT NULL, job_identifier VARCHAR(64) NOT NULL, status VARCHAR(16) NOT NULL)").Error)
	require.NoError(tt.t, tt.db.Exec("CREATE UNIQUE INDEX "+jobs+"_tick ON "+jobs+" (job_name, job_identifier)").Error)
	tt.rowsTable = jobs
}

// TestCompareInsertLocker runs the torture's workload (three replicas, one
// 300 ms late, kills) under the insertLocker, to set its numbers beside
// gocronlock's: runs per tick, duplicate-key errors, rows left behind. A
// measurement more than a check, it runs under LOCKMGR_TORTURE=long or
// LOCKMGR_COMPARE=1 only.
func TestCompareInsertLocker(t *testing.T) {
	if testing.Short() || os.Getenv("LOCKMGR_TORTURE") != "long" && os.Getenv("LOCKMGR_COMPARE") == "" {
		t.Skip("a measurement: LOCKMGR_TORTURE=long or LOCKMGR_COMPARE=1 runs it")
	}
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			tt := newTorture(t, b, "insert")
			tt.createInsertTable()
			tt.run(tortureLength()/2, true)
			v := tt.judge()
			t.Logf("%s insert locker: %v; %d kills; lock errors %d (duplicate keys %d, in the server log %d); rows at most %d, left %d",
				b.name, v, len(tt.kills), len(tt.lockErrs), tt.duplicateKeys(), serverDuplicateKeys(b.kind, tt.rowsTable), tt.maxRows, tt.rowsLeft())
			assert.Positive(t, tt.duplicateKeys(), "every contested tick is a duplicate-key error")
			assert.GreaterOrEqual(t, tt.rowsLeft(), int64(v.ticks), "a row per tick stays")
		})
	}
}
