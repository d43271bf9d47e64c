package reliability

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/mysql"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/gormlock/lockmgr"
)

// envGaleraDSNs names the nodes of a MariaDB Galera Cluster, separated by
// spaces; .ci/engines/galera.sh starts one and .ci/run sets it.
const envGaleraDSNs = "LOCKMGR_TEST_GALERA_DSNS"

// galeraNodes returns the cluster's node DSNs, or skips the test.
func galeraNodes(t *testing.T) []string {
	t.Helper()
	nodes := strings.Fields(os.Getenv(envGaleraDSNs))
	if len(nodes) == 0 {
		t.Skip("no Galera cluster: set " + envGaleraDSNs + " (bash .ci/engines/galera.sh start prints it)")
	}
	require.GreaterOrEqual(t, len(nodes), 2, "%s needs two nodes or more", envGaleraDSNs)
	return nodes
}

// galeraTortureParams are the issue's: 3 processes × 6 goroutines over 3
// names, for the usual torture duration (LOCKMGR_TORTURE=long: 10 min).
func galeraTortureParams(nodes []string) tortureParams {
	p := currentTortureParams()
	p.Procs, p.Goroutines, p.Names = len(nodes), 6, 3
	return p
}

// TestGaleraTorture runs the torture harness across the cluster: each
// worker process on a node of its own, then each statement of every
// process to a random node. The harness's occupancy and audit tables stay
// on node 1, so holds are ordered by one server; the lock calls are not.
// Run with one node's clock behind (LOCKMGR_GALERA_SKEW_MS when starting
// the cluster; CI does) it also checks fences across skewed clocks.
func TestGaleraTorture(t *testing.T) {
	nodes := galeraNodes(t)
	tg := target{Name: "galera", Driver: "mysql", DSN: nodes[0]}
	skew := galeraClockOffset(t, nodes)
	for _, spread := range []bool{false, true} {
		name := map[bool]string{false: "process-per-node", true: "statement-per-random-node"}[spread]
		t.Run(name, func(t *testing.T) {
			t.Logf("clock of the last node minus the first: %v", skew)
			tg := tg
			tg.Name = "galera " + name
			tortureAndCheck(t, tg, galeraTortureParams(nodes), func(c *tortureConfig) {
				c.NodeDSNs, c.Spread = nodes, spread
			})
		})
	}
}

// galeraClockOffset is the last node's UTC_TIMESTAMP minus the first's:
// of five readings of the last node between two of the first, the one
// with the shortest bracket, against the bracket's middle.
func galeraClockOffset(t *testing.T, nodes []string) time.Duration {
	t.Helper()
	first := mustOpen(t, target{Driver: "mysql", DSN: nodes[0]})
	last := mustOpen(t, target{Driver: "mysql", DSN: nodes[len(nodes)-1]})
	read := func(db *gorm.DB) int64 {
		var us int64
		require.NoError(t, db.Raw("SELECT TIMESTAMPDIFF(MICROSECOND, '1970-01-01', UTC_TIMESTAMP(6))").Scan(&us).Error)
		return us
	}
	read(first)
	read(last) // connections open
	best, offset := int64(-1), int64(0)
	for range 5 {
		a, b, c := read(first), read(last), read(first)
		if best < 0 || c-a < best {
			best, offset = c-a, b-(a+c)/2
		}
	}
	return time.Duration(offset) * time.Microsecond
}

// openLockDB is the *gorm.DB a torture worker locks through: harness
// itself, or per cfg.NodeDSNs one node, or a pool that sends each
// statement (each transaction) to a random node.
func openLockDB(cfg tortureConfig, harness *gorm.DB) (*gorm.DB, error) {
	if len(cfg.NodeDSNs) == 0 {
		return harness, nil
	}
	if !cfg.Spread {
		return openDB(cfg.Driver, cfg.NodeDSNs[cfg.Proc%len(cfg.NodeDSNs)])
	}
	pool := &spreadPool{}
	for _, dsn := range cfg.NodeDSNs {
		db, err := sql.Open("mysql", dsn)
		if err != nil {
			return nil, err
		}
		db.SetMaxOpenConns(cfg.Goroutines + 2)
		pool.dbs = append(pool.dbs, db)
	}
	return gorm.Open(mysql.New(mysql.Config{Conn: pool}), &gorm.Config{Logger: logger.Discard})
}

// spreadPool is a gorm.ConnPool over several nodes that runs every
// statement, and every transaction, on one picked at random.
type spreadPool struct{ dbs []*sql.DB }

func (p *spreadPool) pick() *sql.DB { return p.dbs[rand.IntN(len(p.dbs))] }

func (p *spreadPool) PrepareContext(ctx context.Context, q string) (*sql.Stmt, error) {
	return p.pick().PrepareContext(ctx, q)
}

func (p *spreadPool) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return p.pick().ExecContext(ctx, q, args...)
}

func (p *spreadPool) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return p.pick().QueryContext(ctx, q, args...)
}

func (p *spreadPool) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	return p.pick().QueryRowContext(ctx, q, args...)
}

func (p *spreadPool) BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error) {
	return p.pick().BeginTx(ctx, opts)
}

// galeraProbeCount is how many cross-node probes TestGaleraProbes makes.
func galeraProbeCount() int {
	switch tortureMode() {
	case "long":
		return 2000
	case "short":
		return 300
	default:
		return 40
	}
}

// TestGaleraProbes takes a lock on one node and, right after GetLock
// returned, asks another node about it and acts on it: IsLocked, Get and
// List must see it, Renew and Release (owner-checked by token) must find
// it, and a third node must then be able to take the name at once.
func TestGaleraProbes(t *testing.T) {
	nodes := galeraNodes(t)
	ctx := context.Background()
	table := tableName("lock")
	ms := make([]*lockmgr.Manager, len(nodes))
	for i, dsn := range nodes {
		db := mustOpen(t, target{Driver: "mysql", DSN: dsn})
		if i == 0 {
			ms[i] = newManager(t, db, table)
			continue
		}
		m, err := lockmgr.New(db, lockmgr.WithTable(table))
		require.NoError(t, err)
		ms[i] = m
	}
	fails := map[string]int{}
	n := galeraProbeCount()
	for i := range n {
		a, b, c := ms[i%len(ms)], ms[(i+1)%len(ms)], ms[(i+2)%len(ms)]
		name := fmt.Sprintf("probe-%d", i)
		for op, err := range galeraProbe(ctx, a, b, c, name) {
			if err != nil {
				fails[op+": "+short(strings.ReplaceAll(err.Error(), name, "NAME"))]++
			}
		}
	}
	report(t, "galera-probes", map[string]any{"db": "galera", "probes": n, "failures": fails})
	assert.Empty(t, fails, "calls on another node right after GetLock returned")
}

// galeraProbe runs one probe of name: GetLock on a, then on b, then GetLock
// on c after b released. It returns each step's error (nil: right).
func galeraProbe(ctx context.Context, a, b, c *lockmgr.Manager, name string) map[string]error {
	out := map[string]error{}
	l, err := a.GetLock(ctx, name, lockmgr.Expires(time.Minute))
	if out["GetLock"] = err; err != nil {
		return out
	}
	held, err := b.IsLocked(ctx, name)
	out["IsLocked"] = want(err, held, "IsLocked said false")
	got, err := b.Get(ctx, name)
	out["Get"] = want(err, err == nil && got.Token == l.Token, "Get did not return the holder")
	list, err := b.List(ctx)
	out["List"] = want(err, slices.ContainsFunc(list, func(x lockmgr.Lock) bool { return x.Name == name }), "List lacked it")
	nl, err := b.Renew(ctx, l, lockmgr.Expires(2*time.Minute))
	out["Renew"] = err
	if err == nil {
		l = nl
	}
	out["Release"] = b.Release(ctx, l)
	l2, err := c.GetLock(ctx, name, lockmgr.Expires(time.Minute))
	out["GetLock after Release"] = err
	if err == nil {
		out["Release on the same node"] = c.Release(ctx, l2)
		out["fence grew"] = want(nil, l2.Fence > l.Fence, fmt.Sprintf("fence %d after %d", l2.Fence, l.Fence))
	}
	return out
}

// want is err, or an error saying what when ok is false.
func want(err error, ok bool, what string) error {
	if err != nil || ok {
		return err
	}
	return errors.New(what)
}
