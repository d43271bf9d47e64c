package gocronlock_test

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// run is one row of the ledger: a replica ran the job for a tick.
type run struct {
	Tick      int64
	Pid       int
	Replica   int
	CalledMS  int64 // when gocron asked for the lock
	StartedMS int64 // when the job began
	Done      int
}

// verdict is what the ledger says of a torture.
type verdict struct {
	ticks, once, twice, zero int
	killedMidRun, excused    []int64 // ticks whose runner was killed mid-run; ticks with no run, a kill beside them
	notOnTime                []int64 // ticks just after a kill that did not run once, on time
	doubles                  []int64 // ticks that ran twice or more
	// beyond are ticks that ran twice because a replica asked for the lock
	// after the first run's LockAtLeastFor had passed (a machine too busy
	// for the replicas' spread to stay within it): outside the guarantee.
	beyond []int64
	lateMS int64 // the latest start after its tick, of any run
}

func (v verdict) String() string {
	return fmt.Sprintf("ticks %d: once %d, twice or more %d (and %d asked for after the hold), none %d (excused by a kill: %d); "+
		"killed mid-run %d; not on time after a kill %d; latest start %d ms after its tick", v.ticks, v.once, v.twice, len(v.beyond),
		v.zero, len(v.excused), len(v.killedMidRun), len(v.notOnTime), v.lateMS)
}

// judge reads the ledger for the ticks between two seconds after the
// start and two before the stop: the fleet was up for all of them.
func (tt *torture) judge() verdict {
	var runs []run
	require.NoError(tt.t, tt.db.Table(tt.ledger).Find(&runs).Error)
	byTick := map[int64][]run{}
	for _, r := range runs {
		byTick[r.Tick] = append(byTick[r.Tick], r)
	}
	killed := map[int]bool{}
	for _, k := range tt.kills {
		killed[k.pid] = true
	}
	var v verdict
	first, last := tt.start.Unix()+2, tt.stopped.Unix()-2
	for tick := first; tick <= last; tick++ {
		rs := byTick[tick]
		v.ticks++
		switch {
		case len(rs) == 1:
			v.once++
		case len(rs) > 1 && beyondHold(rs):
			v.beyond = append(v.beyond, tick)
		case len(rs) > 1:
			v.twice++
			v.doubles = append(v.doubles, tick)
		case tt.killedNear(tick):
			v.excused = append(v.excused, tick)
			v.zero++
		default:
			v.zero++
		}
		for _, r := range rs {
			v.lateMS = max(v.lateMS, r.StartedMS-tick*1000)
			if r.Done == 0 && killed[r.Pid] {
				v.killedMidRun = append(v.killedMidRun, tick)
			}
		}
	}
	v.notOnTime = tt.afterKills(byTick, first, last)
	return v
}

// tortureHold is the LockAtLeastFor of the torture's Locker: half its
// one-second interval.
const tortureHold = 500 * time.Millisecond

// beyondHold reports runs of one tick of which a later one asked for the
// lock when the first run's hold had passed: the first began (its lock
// acquired) before it started.
func beyondHold(rs []run) bool {
	first := rs[0]
	for _, r := range rs {
		if r.StartedMS < first.StartedMS {
			first = r
		}
	}
	for _, r := range rs {
		if r != first && r.CalledMS-first.StartedMS >= tortureHold.Milliseconds() {
			return true
		}
	}
	return false
}

// killedNear reports a kill from just before tick to its end: its runner
// may have died holding the lock before it wrote to the ledger.
func (tt *torture) killedNear(tick int64) bool {
	for _, k := range tt.kills {
		if ms := k.at.UnixMilli() - tick*1000; ms >= -200 && ms < 1000 {
			return true
		}
	}
	return false
}

// afterKills lists the two ticks after each kill that did not run exactly
// once, starting within the lag of the latest scheduler plus 500 ms.
func (tt *torture) afterKills(byTick map[int64][]run, first, last int64) []int64 {
	var bad []int64
	for _, k := range tt.kills {
		next := k.at.Unix() + 1
		for tick := next; tick < next+2; tick++ {
			if tick < first || tick > last || len(byTick[tick]) == 0 && tt.killedNear(tick) {
				continue // a tick whose own runner was killed is excused as such
			}
			rs := byTick[tick]
			if len(rs) != 1 || rs[0].StartedMS-tick*1000 > (lags[2]+500*time.Millisecond).Milliseconds() {
				bad = append(bad, tick)
			}
		}
	}
	sort.Slice(bad, func(i, j int) bool { return bad[i] < bad[j] })
	return bad
}

// duplicateKeys counts the lock errors the children saw that are
// duplicate-key errors.
func (tt *torture) duplicateKeys() int {
	n := 0
	for _, e := range tt.lockErrs {
		if isDuplicateKey(e) {
			n++
		}
	}
	return n
}

func isDuplicateKey(msg string) bool {
	for _, s := range []string{"duplicate key", "Duplicate entry", "UNIQUE constraint failed"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// pgLog is PostgreSQL's server log where this machine keeps it; a
// server elsewhere is not read.
const pgLog = "/var/log/postgresql/postgresql-15-main.log"

// serverDuplicateKeys counts the duplicate-key errors PostgreSQL's log
// holds for table (-1: the log is not readable here).
func serverDuplicateKeys(kind, table string) int {
	if kind != "postgres" {
		return -1
	}
	b, err := os.ReadFile(pgLog)
	if err != nil {
		return -1
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "duplicate key") && strings.Contains(line, table) {
			n++
		}
	}
	return n
}

// tortureLength is how long the fleet runs: 15 s, or 60 s under
// LOCKMGR_TORTURE=long (the control runs half as long).
func tortureLength() time.Duration {
	if os.Getenv("LOCKMGR_TORTURE") == "long" {
		return 60 * time.Second
	}
	return 15 * time.Second
}

// TestSchedulingTorture: three processes run the same gocron job every
// second, the third's scheduler 300 ms behind, runners killed at random.
// With gocronlock's Locker every tick runs exactly once (none twice, none
// skipped but beside a kill), and the ticks after a kill run on time. The
// control, a locker that releases as soon as the job returns, runs many
// ticks twice under the same lag (most, unless the database is slow).
func TestSchedulingTorture(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	for _, b := range tortureBackends(t) {
		t.Run(b.name, func(t *testing.T) {
			tt := newTorture(t, b, "lockmgr")
			tt.run(tortureLength(), true)
			v := tt.judge()
			time.Sleep(1500 * time.Millisecond) // the last tick's hold passes
			t.Logf("%s lockmgr: %v; %d kills; lock errors %d (duplicate keys %d, in the server log %d); lock rows at most %d, left %d",
				b.name, v, len(tt.kills), len(tt.lockErrs), tt.duplicateKeys(), serverDuplicateKeys(b.kind, tt.table), tt.maxRows, tt.rowsLeft())
			assert.Zero(t, v.twice, "no tick ran twice")
			for _, tick := range v.doubles {
				t.Errorf("tick %d ran twice:\n%s", tick, tt.around(tick))
			}
			for _, tick := range v.beyond {
				t.Logf("tick %d ran twice, asked for after its hold (the machine was too busy):\n%s", tick, tt.around(tick))
			}
			assert.LessOrEqual(t, len(v.beyond), v.ticks/5, "the machine kept the replicas within the hold for most ticks")
			assert.Equal(t, v.zero, len(v.excused), "no tick was skipped but beside a kill")
			for _, tick := range v.notOnTime {
				t.Errorf("tick %d after a kill did not run once, on time:\n%s", tick, tt.around(tick))
			}
			assert.Empty(t, tt.lockErrs, "contested ticks are no errors")
			assert.Empty(t, tt.ledgerErrs)
			assert.LessOrEqual(t, tt.maxRows, int64(1), "one row at most, the tick's")
			assert.Positive(t, v.ticks)

			c := newTorture(t, b, "naive")
			c.run(tortureLength()/2, false)
			cv := c.judge()
			t.Logf("%s control (release right after the job): %v", b.name, cv)
			// Most ticks, where the database answers in a few milliseconds;
			// a slow one (TiDB on a busy machine) makes the late replica's
			// attempt meet the first run still going.
			assert.Greater(t, cv.twice, cv.ticks/4, "the control runs many ticks twice: the torture can fail")
		})
	}
}

// around describes the ledger and the kills near tick, for a failure's
// message.
func (tt *torture) around(tick int64) string {
	var runs []run
	_ = tt.db.Table(tt.ledger).Where("tick BETWEEN ? AND ?", tick-2, tick+1).Order("started_ms").Find(&runs).Error
	var b strings.Builder
	for _, r := range runs {
		fmt.Fprintf(&b, "tick %d: replica %d pid %d asked for the lock at %+d ms, started %+d ms, done %d\n",
			r.Tick, r.Replica, r.Pid, r.CalledMS-r.Tick*1000, r.StartedMS-r.Tick*1000, r.Done)
	}
	for _, k := range tt.kills {
		if d := k.at.UnixMilli() - tick*1000; d > -3000 && d < 2000 {
			fmt.Fprintf(&b, "kill of pid %d at %+d ms\n", k.pid, d)
		}
	}
	return b.String()
}
