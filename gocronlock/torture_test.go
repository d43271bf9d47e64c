package gocronlock_test

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-co-op/gocron/v2"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/gormlock/lockmgr"
	"github.com/gormlock/lockmgr/gocronlock"
)

// childLocker is the locker a torture child runs its scheduler with.
func childLocker(t *testing.T, m *lockmgr.Manager, db *gorm.DB) gocron.Locker {
	switch kind := os.Getenv(envLocker); kind {
	case "naive":
		return naiveLocker{m}
	case "insert":
		return newInsertLocker(db)
	default:
		l, err := gocronlock.NewLocker(m, gocronlock.Interval(time.Second)) // LockAtLeastFor: tortureHold
		require.NoError(t, err)
		return l
	}
}

// The torture's fleet: three replicas, the third's scheduler 300 ms late.
var lags = []time.Duration{0, 0, 300 * time.Millisecond}

// torture is one run of the fleet on one database with one locker.
type torture struct {
	t              *testing.T
	b              backend
	db             *gorm.DB
	table, ledger  string
	rowsTable      string // the table whose rows are counted: the lock table, or the insertLocker's
	locker         string
	mu             sync.Mutex
	kills          []kill
	lockErrs       []string // lock errors other than "held", as the children reported them
	ledgerErrs     []string
	maxRows        int64 // the most lock rows seen at once during the run
	start, stopped time.Time
}

type kill struct {
	at  time.Time
	pid int
}

// replica is one running child.
type replica struct {
	id   int
	cmd  *exec.Cmd
	exit chan struct{}
}

func newTorture(t *testing.T, b backend, locker string) *torture {
	db := b.open(t)
	tt := &torture{t: t, b: b, db: db, table: uniqueTable("gocronlock_x_"), ledger: uniqueTable("gocronlock_ledger_"), locker: locker}
	tt.rowsTable = tt.table
	t.Cleanup(func() { _ = db.Migrator().DropTable(tt.table, tt.table+"_fence", tt.ledger) })
	m, err := lockmgr.New(db, lockmgr.WithTable(tt.table))
	require.NoError(t, err)
	require.NoError(t, m.AutoMigrate(t.Context()))
	require.NoError(t, db.Exec("CREATE TABLE "+tt.ledger+
		" (tick BIGINT NOT NULL, pid INT NOT NULL, replica INT NOT NULL, called_ms BIGINT NOT NULL, started_ms BIGINT NOT NULL, done INT NOT NULL)").Error)
	return tt
}

// spawn starts replica id and waits until its scheduler runs.
func (tt *torture) spawn(id int) *replica {
	cmd := exec.Command(os.Args[0], "-test.run=^TestTortureChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), envChild+"=1", envKind+"="+tt.b.kind, envDSN+"="+tt.b.node(id), envTable+"="+tt.table,
		envLedger+"="+tt.ledger, envLocker+"="+tt.locker, fmt.Sprintf("%s=%d", envReplica, id),
		fmt.Sprintf("%s=%d", envSkew, lags[id].Milliseconds()))
	out, err := cmd.StdoutPipe()
	require.NoError(tt.t, err)
	cmd.Stderr = os.Stderr
	require.NoError(tt.t, cmd.Start())
	r := &replica{id: id, cmd: cmd, exit: make(chan struct{})}
	ready := make(chan struct{})
	go func() {
		defer close(r.exit)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			tt.read(sc.Text(), ready)
		}
		_ = cmd.Wait()
	}()
	select {
	case <-ready:
	case <-r.exit:
		tt.t.Fatalf("replica %d exited before it was ready", id)
	case <-time.After(60 * time.Second):
		tt.t.Fatalf("replica %d not ready in 60 s", id)
	}
	return r
}

// read takes in one line of a child's output.
func (tt *torture) read(line string, ready chan struct{}) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	switch {
	case line == "READY":
		close(ready)
	case strings.HasPrefix(line, "LOCKERR "):
		tt.lockErrs = append(tt.lockErrs, strings.TrimPrefix(line, "LOCKERR "))
	case strings.HasPrefix(line, "LEDGERERR "):
		tt.ledgerErrs = append(tt.ledgerErrs, strings.TrimPrefix(line, "LEDGERERR "))
	}
}

// run runs the fleet for d; with kills, a random replica is killed
// (SIGKILL) every 1.5 to 3.5 s and started again.
func (tt *torture) run(d time.Duration, kills bool) {
	fleet := make([]*replica, len(lags))
	for i := range fleet {
		fleet[i] = tt.spawn(i)
	}
	tt.start = time.Now()
	for time.Since(tt.start) < d {
		time.Sleep(time.Duration(1500+rand.IntN(2000)) * time.Millisecond)
		tt.sampleRows()
		if !kills || time.Since(tt.start) >= d {
			continue
		}
		i := rand.IntN(len(fleet))
		tt.mu.Lock()
		tt.kills = append(tt.kills, kill{at: time.Now(), pid: fleet[i].cmd.Process.Pid})
		tt.mu.Unlock()
		_ = fleet[i].cmd.Process.Signal(syscall.SIGKILL)
		<-fleet[i].exit
		fleet[i] = tt.spawn(i)
	}
	for _, r := range fleet {
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, r := range fleet {
		select {
		case <-r.exit:
		case <-time.After(20 * time.Second):
			_ = r.cmd.Process.Kill()
			<-r.exit
		}
	}
	tt.stopped = time.Now()
}

func (tt *torture) sampleRows() {
	var n int64
	if tt.db.Table(tt.rowsTable).Count(&n).Error == nil && n > tt.maxRows {
		tt.maxRows = n
	}
}

func (tt *torture) rowsLeft() int64 {
	var n int64
	require.NoError(tt.t, tt.db.Table(tt.rowsTable).Count(&n).Error)
	return n
}
