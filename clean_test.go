package lockmgr_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/gormlock/lockmgr"
)

// bulkNames is n names with prefix, zero-padded.
func bulkNames(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%05d", prefix, i)
	}
	return out
}

// rowCount is how many rows e's table has.
func (e *env) rowCount() int64 {
	e.t.Helper()
	var n int64
	require.NoError(e.t, e.db.Table(e.table).Count(&n).Error)
	return n
}

// TestCleanLocksInBatches: CleanLocks of more expired rows than a batch
// deletes them with several bounded statements, not one that locks them
// all, counts every row it deleted, and leaves the live ones.
func TestCleanLocksInBatches(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		e.insertRows(bulkNames("live:", 300), bulkNames("old:", 2600))
		m, c := e.countingManager()
		_, err := m.IsLocked(e.ctx, "warm-up") // the first call checks the table
		require.NoError(t, err)
		c.take()
		n, err := m.CleanLocks(e.ctx)
		require.NoError(t, err)
		assert.EqualValues(t, 2600, n, "every expired row is counted")
		assert.EqualValues(t, 300, e.rowCount(), "the live rows stay")
		var deletes int
		for _, q := range c.take() {
			if strings.HasPrefix(q, "DELETE") || strings.Contains(q, " DELETE ") {
				deletes++
				assert.Contains(t, q, "LIMIT", "every DELETE of CleanLocks is bounded")
			}
		}
		assert.GreaterOrEqual(t, deletes, 3, "2600 rows are deleted in batches")
		requireListed(t, m, e, bulkNames("live:", 300))
	})
}

// TestCleanLocksBatchSizes: whatever the batch size, including one that
// divides the expired rows exactly, CleanLocks deletes and counts them all.
func TestCleanLocksBatchSizes(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		for _, batch := range []int{1, 7, 21, 22, 1000} {
			t.Run(fmt.Sprint(batch), func(t *testing.T) {
				defer lockmgr.SetCleanBatch(batch)()
				e.insertRows(bulkNames(fmt.Sprintf("live%d:", batch), 5), bulkNames(fmt.Sprintf("old%d:", batch), 21))
				before := e.rowCount()
				n, err := e.m.CleanLocks(e.ctx)
				require.NoError(t, err)
				assert.EqualValues(t, 21, n)
				assert.EqualValues(t, before-21, e.rowCount())
				n, err = e.m.CleanLocks(e.ctx)
				require.NoError(t, err)
				assert.Zero(t, n, "nothing left to clean")
			})
		}
	})
}

// TestCleanLocksStopsWithContext: a CleanLocks whose context ends after
// its first batch stops there, returns the context's error and how many
// rows it did delete, and leaves the rest for the next run.
func TestCleanLocksStopsWithContext(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		defer lockmgr.SetCleanBatch(10)()
		e.insertRows(nil, bulkNames("old:", 100))
		sqlDB, err := e.db.DB()
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(e.ctx)
		defer cancel()
		db := e.db.Session(&gorm.Session{NewDB: true, Context: context.Background()})
		db.Statement.ConnPool = &cancelAfterDelete{DB: sqlDB, cancel: cancel}
		m, err := lockmgr.New(db, lockmgr.WithTable(e.table))
		require.NoError(t, err)
		_, err = m.IsLocked(e.ctx, "warm-up") // the first call checks the table
		require.NoError(t, err)
		n, err := m.CleanLocks(ctx)
		require.ErrorIs(t, err, context.Canceled)
		left := e.rowCount()
		assert.EqualValues(t, 100, n+left, "n is what it deleted")
		assert.GreaterOrEqual(t, left, int64(90), "it stopped after its first batch")
	})
}

// cancelAfterDelete is a connection pool that calls cancel once a DELETE
// has run on it or on one of its transactions.
type cancelAfterDelete struct {
	*sql.DB
	cancel func()
}

func (p *cancelAfterDelete) after(q string) {
	if strings.Contains(q, "DELETE") {
		p.cancel()
	}
}

func (p *cancelAfterDelete) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	defer p.after(q)
	return p.DB.ExecContext(ctx, q, args...)
}

func (p *cancelAfterDelete) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	defer p.after(q)
	return p.DB.QueryContext(ctx, q, args...)
}

func (p *cancelAfterDelete) BeginTx(ctx context.Context, opts *sql.TxOptions) (gorm.ConnPool, error) {
	tx, err := p.DB.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return &cancelAfterDeleteTx{Tx: tx, p: p}, nil
}

type cancelAfterDeleteTx struct {
	*sql.Tx
	p *cancelAfterDelete
}

func (t *cancelAfterDeleteTx) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	defer t.p.after(q)
	return t.Tx.ExecContext(ctx, q, args...)
}
