package reliability

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/gormlock/lockmgr"
	"github.com/gormlock/lockmgr/pgnotify"
)

// pgreplica runs .ci/engines/pgreplica.sh with args and returns the last
// line it printed. Node b, the standby promoted first, runs 50 ms behind
// node a (libfaketime) unless LOCKMGR_PGREPLICA_SKEW_MS says otherwise.
func pgreplica(t *testing.T, args ...string) string {
	t.Helper()
	script, err := filepath.Abs(filepath.Join("..", ".ci", "engines", "pgreplica.sh"))
	require.NoError(t, err)
	var out, errOut bytes.Buffer
	cmd := exec.Command("bash", append([]string{script}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if _, set := os.LookupEnv("LOCKMGR_PGREPLICA_SKEW_MS"); !set {
		cmd.Env = append(os.Environ(), "LOCKMGR_PGREPLICA_SKEW_MS=50")
	}
	require.NoError(t, cmd.Run(), "pgreplica.sh %v: %s", args, errOut.String())
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	return lines[len(lines)-1]
}

// failoverEnv is one mode's cluster, seen through its multi-host DSN.
type failoverEnv struct {
	mode, dsn, table string
	db               *gorm.DB
	m                *lockmgr.Manager
	listener         *pgnotify.Listener
	heard            chan string
}

// TestReplicaFailover runs a private primary and hot standby
// (.ci/engines/pgreplica.sh), in synchronous and in asynchronous mode,
// and fails over twice in each: once plainly to a standby whose clock
// runs 50 ms behind, once back (after a rebuild) with the replication
// stream cut a second before the kill. Worker processes acquire through
// a multi-host DSN all along. Judged from outside: every acquisition
// acknowledged before the kill is on the new primary (sync), fences of a
// name only grow, no two holders overlap unless an acquisition was lost
// (async), a scope keeps its lock or reports its loss, calls and a
// pgnotify listener resume on the new primary. Controls: a client pinned
// to the old primary's port fails; the async cut round loses acquisitions.
func TestReplicaFailover(t *testing.T) {
	if os.Getenv("LOCKMGR_TEST_PGREPLICA") != "1" {
		t.Skip("LOCKMGR_TEST_PGREPLICA=1 runs the failover tests (they start .ci/engines/pgreplica.sh)")
	}
	for _, mode := range []string{"sync", "async"} {
		t.Run(mode, func(t *testing.T) {
			env := startReplicaEnv(t, mode)
			runFailoverRound(t, env, "plain")
			pgreplica(t, "rebuild")
			runFailoverRound(t, env, "cut")
		})
	}
}

func startReplicaEnv(t *testing.T, mode string) *failoverEnv {
	t.Helper()
	pgreplica(t, "stop") // whatever a killed run left behind
	dsn := pgreplica(t, "start", mode)
	t.Cleanup(func() { pgreplica(t, "stop") })
	env := &failoverEnv{mode: mode, dsn: dsn, table: tableName("failover"), heard: make(chan string, 1)}
	env.db = mustOpen(t, target{Driver: "postgres", DSN: dsn})
	env.m = newManager(t, env.db, env.table)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := pgnotify.Listen(ctx, dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	l.Subscribe("lockmgr_relisten", func(name string) {
		select {
		case env.heard <- name:
		default:
		}
	})
	l.Watch("lockmgr_relisten", "watched") // held until the test ends
	env.listener = l
	return env
}

// failoverRound is what one failover's workers told the parent.
type failoverRound struct {
	mu          sync.Mutex
	acks        []replicaAck
	cut, killed time.Time
}

func (r *failoverRound) add(a replicaAck) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a.Recv = time.Now()
	r.acks = append(r.acks, a)
}

// runFailoverRound loads the cluster with workers, kills the primary
// mid-load, promotes the standby and checks what came through.
func runFailoverRound(t *testing.T, env *failoverEnv, round string) {
	cut := round == "cut"
	oldPort := primaryPort(t)
	pinned := pinnedManager(t, env.table, oldPort)
	r := &failoverRound{}
	workers := startReplicaWorkers(t, env, r, round, 7*time.Second)
	scope := holdScope(t, env, round)
	counter := startCounter(t, env)
	time.Sleep(2500 * time.Millisecond)
	if cut {
		pgreplica(t, "cut")
		r.cut = time.Now()
		time.Sleep(time.Second)
	}
	counter.halt()
	r.killed = time.Now()
	pgreplica(t, "failover")
	promoted := time.Now()
	resume := resumeTime(t, env.m, promoted)
	relisten := relistenTime(t, env, promoted)
	rewatch := rewatchTime(t, env, promoted)
	contention := contendScope(t, env, scope)
	repeated := counter.repeated(t)
	for _, w := range workers {
		<-w
	}
	res := judgeRound(t, env, r)
	_, err := pinned.GetLock(context.Background(), "pinned-control", lockmgr.Expires(time.Second))
	assert.Error(t, err, "control: a client pinned to the old primary's port %s still writes", oldPort)
	checkRound(t, env.mode, cut, res, repeated)
	report(t, "replica-failover", map[string]any{
		"replication": env.mode, "round": round, "acks": len(r.acks), "acked_before_kill": res.before,
		"lost": res.lost, "overlaps": res.overlaps, "unexplained_overlaps": res.unexplained,
		"taken_over": res.takenOver, "fence_repeats": res.repeats, "fence_back": res.back, "resume_s": resume.Seconds(),
		"relisten_s": relisten.Seconds(), "rewatch_s": rewatch.Seconds(), "scope": contention, "pinned_control_failed": err != nil, "counter_control_repeated": repeated,
	})
}

// checkRound asserts what each mode promises.
func checkRound(t *testing.T, mode string, cut bool, res roundResult, counterRepeated bool) {
	assert.Zero(t, res.repeats, "fence repeats")
	assert.Zero(t, res.back, "fences that went back across the failover")
	assert.Zero(t, res.unexplained, "overlaps no lost acquisition explains")
	if mode == "sync" {
		assert.Zero(t, res.lost, "acknowledged acquisitions lost with synchronous replication")
		assert.Zero(t, res.overlaps, "overlapping holders with synchronous replication")
		assert.False(t, counterRepeated, "a plain counter repeated a number with synchronous replication")
	}
	if mode == "async" && cut {
		assert.Positive(t, res.lost, "control: async replication with a cut stream lost nothing, so the loss check may be blind")
		assert.Equal(t, res.lost, res.takenOver, "a lost acquisition another caller could not take: was it lost?")
		assert.True(t, counterRepeated, "control: a counter without a clock floor did not repeat, so the fence check may be blind")
	}
	assert.Positive(t, res.before, "no acquisition was acknowledged before the kill")
}

// primaryPort is the port of the node pgreplica.sh reports as primary.
func primaryPort(t *testing.T) string { return nodePort(t, "primary") }

// nodePort is the port of the node pgreplica.sh reports in role.
func nodePort(t *testing.T, role string) string {
	t.Helper()
	out, err := exec.Command("bash", filepath.Join("..", ".ci", "engines", "pgreplica.sh"), "status").Output()
	require.NoError(t, err)
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) == 4 && f[3] == role {
			return strings.TrimPrefix(f[1], "127.0.0.1:")
		}
	}
	t.Fatalf("no %s in %q", role, out)
	return ""
}

func pinnedManager(t *testing.T, table, port string) *lockmgr.Manager {
	t.Helper()
	db := mustOpen(t, target{Driver: "postgres", DSN: "postgres://postgres@127.0.0.1:" + port + "/test?sslmode=disable&connect_timeout=2"})
	m, err := lockmgr.New(db, lockmgr.WithTable(table))
	require.NoError(t, err)
	return m
}

// startReplicaWorkers starts 3 worker processes for d; each returned
// channel closes when its worker has exited and its output is read.
func startReplicaWorkers(t *testing.T, env *failoverEnv, r *failoverRound, round string, d time.Duration) []chan struct{} {
	var done []chan struct{}
	for p := 0; p < 3; p++ {
		cfg := replicaConfig{Target: childTarget{Driver: "postgres", DSN: env.dsn, LockTable: env.table},
			Round: round, Proc: p, Shared: 4, Expiry: 150 * time.Millisecond, Duration: d}
		c := startChild(context.Background(), t, "replica", cfg)
		ch := make(chan struct{})
		done = append(done, ch)
		go func() {
			defer close(ch)
			sc := bufio.NewScanner(c.stdout)
			for sc.Scan() {
				var a replicaAck
				if json.Unmarshal(sc.Bytes(), &a) == nil {
					r.add(a)
				}
			}
			if err := c.cmd.Wait(); err != nil {
				t.Errorf("worker: %v: %s", err, c.stderr.String())
			}
		}()
	}
	return done
}

// resumeTime is how long after the promotion a call through the
// multi-host DSN first succeeds.
func resumeTime(t *testing.T, m *lockmgr.Manager, since time.Time) time.Duration {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		l, err := m.GetLock(ctx, "resume-probe", lockmgr.Expires(time.Millisecond))
		cancel()
		if err == nil {
			_ = m.Release(context.Background(), l)
			return time.Since(since)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("calls through the multi-host DSN did not resume within 30 s of the promotion")
	return 0
}

// relistenTime is how long after the promotion a notice sent on the new
// primary first reaches the pgnotify listener.
func relistenTime(t *testing.T, env *failoverEnv, since time.Time) time.Duration {
	t.Helper()
	for len(env.heard) > 0 {
		<-env.heard
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		_ = env.db.Exec("SELECT pg_notify('lockmgr_relisten', 'ping')").Error
		select {
		case <-env.heard:
			return time.Since(since)
		case <-time.After(25 * time.Millisecond):
		}
	}
	t.Error("the pgnotify listener heard nothing within 30 s of the promotion")
	return 0
}

// rewatchTime is how long after the promotion the listener holds its
// watch's shared advisory lock on the new primary again.
func rewatchTime(t *testing.T, env *failoverEnv, since time.Time) time.Duration {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var n int64
		err := env.db.Raw(`SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND mode = 'ShareLock' AND granted
			AND classid = hashtext('lockmgr_relisten')::oid AND objid = hashtext('watched')::oid`).Scan(&n).Error
		if err == nil && n > 0 {
			return time.Since(since)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Error("the pgnotify listener did not watch again within 30 s of the promotion")
	return 0
}
