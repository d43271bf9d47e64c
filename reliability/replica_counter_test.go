package reliability

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// counterControl is a fence without a clock floor: a plain counter row
// that the parent increments through the failover. Under asynchronous
// replication with a cut stream the new primary lacks the last increments
// and hands out a number already handed out; lockmgr's fences, with their
// floor, must not.
type counterControl struct {
	env    *failoverEnv
	table  string
	mu     sync.Mutex
	max    int64 // the highest number acknowledged before halt
	halted bool
	stop   chan struct{}
}

func startCounter(t *testing.T, env *failoverEnv) *counterControl {
	t.Helper()
	c := &counterControl{env: env, table: tableName("counter"), stop: make(chan struct{})}
	require.NoError(t, env.db.Exec("CREATE TABLE "+c.table+" (id int PRIMARY KEY, n bigint NOT NULL)").Error)
	dropTables(t, env.db, c.table)
	require.NoError(t, env.db.Exec("INSERT INTO "+c.table+" VALUES (1, 0)").Error)
	go func() {
		for {
			select {
			case <-c.stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
			if n, err := c.next(); err == nil {
				c.acked(n)
			}
		}
	}()
	return c
}

// acked records n unless the counter was halted before n came back.
func (c *counterControl) acked(n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.halted && n > c.max {
		c.max = n
	}
}

func (c *counterControl) next() (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var n int64
	err := c.env.db.WithContext(ctx).Raw("UPDATE " + c.table + " SET n = n + 1 WHERE id = 1 RETURNING n").Scan(&n).Error
	return n, err
}

// halt stops the increments (before the kill); one may still be waiting
// for a synchronous standby the cut stream never lets answer.
func (c *counterControl) halt() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.halted = true
	close(c.stop)
}

// repeated says whether the new primary hands out a number already acknowledged.
func (c *counterControl) repeated(t *testing.T) bool {
	t.Helper()
	n, err := c.next()
	require.NoError(t, err)
	c.mu.Lock()
	defer c.mu.Unlock()
	return n <= c.max
}
