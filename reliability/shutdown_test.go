package reliability

import (
	"bufio"
	"context"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/gormlock/lockmgr"
)

const (
	// shutdownExpires is the expiry of every lock of the test: short, so
	// the replica under test is kept alive by renewals (every third of it).
	shutdownExpires = time.Second
	// shutdownWork is how long the replica works on after SIGTERM: longer
	// than the expiry, so only renewals can keep its lock.
	shutdownWork = 2 * time.Second
)

// shutdownRounds is how many rounds of each scenario run per database.
func shutdownRounds() int {
	switch tortureMode() {
	case "short":
		return 3
	case "long":
		return 20
	default:
		return 1
	}
}

// TestShutdown stops a replica inside Do, by SIGTERM and by kill -9, while
// two contender processes try the name (GetLock every 10 ms, Do with
// Wait). A ledger table every process appends to, ordered by its
// auto-increment id, judges the holds:
//
//   - SIGTERM: fn's context is cancelled, fn works on for twice the expiry
//     and returns; no contender holds the name before fn's last write, and
//     one holds it within half the expiry after it (released, not left to
//     expire); Do returns nil.
//   - kill -9: no contender holds the name before the expiry the dead
//     replica last wrote; one holds it within 3 s after it.
//   - control: a replica that releases at SIGTERM while fn works on (what
//     a scope bound to the caller's context did) must be caught by the
//     same ledger, or the test could not fail.
func TestShutdown(t *testing.T) {
	forEachDB(t, func(t *testing.T, tg target) {
		db := mustOpen(t, tg)
		h := &shutdownHarness{tg: tg, db: db, lockT: tableName("lock"), ledgerT: tableName("shutlog")}
		newManager(t, db, h.lockT)
		require.NoError(t, db.Table(h.ledgerT).AutoMigrate(&shutdownEvent{}))
		dropTables(t, db, h.ledgerT)
		t.Run("sigterm", h.testSigterm)
		t.Run("kill", h.testKill)
		t.Run("control", h.testControl)
	})
}

func (h *shutdownHarness) testSigterm(t *testing.T) {
	var delays []time.Duration
	overlaps := 0
	for range shutdownRounds() {
		r := h.run(t, "do", false)
		v := r.verdict
		overlaps += len(v.overlaps)
		assert.Equal(t, "exit ok", r.exit, "Do's result in the replica told to stop")
		assert.Empty(t, v.overlaps, "a contender held the name while fn still worked")
		require.NotNil(t, v.cancelled, "fn's context was never cancelled")
		require.NotNil(t, v.closed, "fn never returned")
		assert.GreaterOrEqual(t, v.closed.At-v.cancelled.At, int64(shutdownWork-100*time.Millisecond),
			"fn did not work on for %v after SIGTERM", shutdownWork)
		require.NotNil(t, v.takeover, "no contender took the name after fn returned")
		d := time.Duration(v.takeover.At - v.closed.At)
		delays = append(delays, d)
		assert.Less(t, d, shutdownExpires/2, "the name was taken %v after fn returned: left to expire, not released", d)
	}
	h.report(t, "shutdown-sigterm", overlaps, "takeover_after_fn_ms", delays)
}

func (h *shutdownHarness) testKill(t *testing.T) {
	var delays []time.Duration
	overlaps := 0
	for range shutdownRounds() {
		r := h.run(t, "do", true)
		v := r.verdict
		overlaps += len(v.overlaps)
		assert.Empty(t, v.overlaps, "a contender held the name before the killed replica's kill was recorded")
		require.NotNil(t, v.takeover, "no contender took the name after the kill")
		d := time.Duration(v.takeover.At - r.until.UnixNano())
		delays = append(delays, d)
		if d < -time.Millisecond {
			overlaps++
			t.Errorf("the name was taken %v before the killed replica's expiry %s", -d, r.until.Format(time.RFC3339Nano))
		}
		assert.Less(t, d, 3*time.Second, "the name was taken only %v after the killed replica's expiry", d)
	}
	h.report(t, "shutdown-kill", overlaps, "takeover_after_expiry_ms", delays)
}

func (h *shutdownHarness) testControl(t *testing.T) {
	caught, rounds := 0, 0
	for range shutdownRounds() {
		r := h.run(t, "early", false)
		assert.Equal(t, "exit ok", r.exit)
		assert.NotEmpty(t, r.verdict.overlaps,
			"the ledger did not catch a replica that released at SIGTERM while fn worked on: the test cannot fail")
		if n := len(r.verdict.overlaps); n > 0 {
			caught, rounds = caught+n, rounds+1
			t.Logf("control, as expected: %d overlapping events, the first: %s", n, r.verdict.overlaps[0])
		}
	}
	report(t, "shutdown-control", map[string]any{
		"db": h.tg.Name, "rounds": shutdownRounds(), "rounds_caught": rounds, "overlapping_events": caught,
	})
}

// shutdownHarness is one database's tables and the rounds run on them.
type shutdownHarness struct {
	tg             target
	db             *gorm.DB
	lockT, ledgerT string
	rounds         int
}

// shutdownRound is what one round left: the replica's last line, the
// expiry it left behind when killed, and the ledger's verdict.
type shutdownRound struct {
	exit    string
	until   time.Time
	verdict shutdownVerdict
}

// run plays one round: replica A (role) takes the name, two contenders
// start trying it, and once A has held it for 0.6 × the expiry (a renewal
// has run) A is sent SIGTERM, or SIGKILL when kill. The round ends when a
// contender has held the name after A's end.
func (h *shutdownHarness) run(t *testing.T, role string, kill bool) shutdownRound {
	t.Helper()
	h.rounds++
	round := h.rounds
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a := h.start(ctx, t, round, "A", role)
	token := strings.TrimPrefix(a.expect(t, "in "), "in ")
	inAt := time.Now()
	bs := []*shutdownProc{h.start(ctx, t, round, "B1", "poll"), h.start(ctx, t, round, "B2", "wait")}
	for _, b := range bs {
		b.expect(t, "trying")
	}
	time.Sleep(time.Until(inAt.Add(shutdownExpires * 6 / 10)))
	var r shutdownRound
	if kill {
		require.NoError(t, a.cmd.Process.Signal(syscall.SIGKILL))
		_ = a.cmd.Wait()
		time.Sleep(200 * time.Millisecond) // let a renewal in flight at the kill land
		r.until = h.heldUntil(t, round, token)
		h.note(t, round, "A", "killed")
	} else {
		require.NoError(t, a.cmd.Process.Signal(syscall.SIGTERM))
		r.exit = a.expect(t, "exit ")
		_ = a.cmd.Wait()
	}
	h.awaitTakeover(t, round)
	for _, b := range bs {
		require.NoError(t, b.cmd.Process.Signal(syscall.SIGTERM))
		assert.Equal(t, "exit ok", b.expect(t, "exit "), "contender %s", b.who)
		_ = b.cmd.Wait()
	}
	r.verdict = judgeShutdown(h.events(t, round))
	return r
}

// shutdownProc is a worker process and its stdout, line by line.
type shutdownProc struct {
	*child
	who   string
	lines chan string
}

func (h *shutdownHarness) start(ctx context.Context, t *testing.T, round int, who, role string) *shutdownProc {
	t.Helper()
	c := startChild(ctx, t, "shutdown", shutdownConfig{
		childTarget: childTarget{Driver: h.tg.Driver, DSN: h.tg.DSN, LockTable: h.lockT}, Ledger: h.ledgerT,
		Name: fmt.Sprintf("job-%d", round), Round: round, Who: who, Role: role,
		Expires: shutdownExpires, Work: shutdownWork,
	})
	p := &shutdownProc{child: c, who: who, lines: make(chan string, 16)}
	go func() {
		defer close(p.lines)
		for sc := bufio.NewScanner(c.stdout); sc.Scan(); {
			p.lines <- sc.Text()
		}
	}()
	return p
}

// expect returns the process's next line starting with prefix.
func (p *shutdownProc) expect(t *testing.T, prefix string) string {
	t.Helper()
	timeout := time.After(time.Minute)
	for {
		select {
		case line, ok := <-p.lines:
			require.True(t, ok, "%s ended before %q:\n%s", p.who, prefix, p.stderr.String())
			if strings.HasPrefix(line, prefix) {
				return line
			}
		case <-timeout:
			t.Fatalf("%s printed no %q in a minute:\n%s", p.who, prefix, p.stderr.String())
		}
	}
}

// heldUntil reads the expiry of the round's name, which must still be A's.
func (h *shutdownHarness) heldUntil(t *testing.T, round int, token string) time.Time {
	t.Helper()
	var l lockmgr.Lock
	require.NoError(t, h.db.Table(h.lockT).Where("name = ?", fmt.Sprintf("job-%d", round)).Take(&l).Error)
	require.Equal(t, token, l.Token, "the killed replica's row was taken over before its expiry was read")
	require.NotNil(t, l.LockedUntil)
	return *l.LockedUntil
}

func (h *shutdownHarness) note(t *testing.T, round int, who, what string) {
	t.Helper()
	ev := shutdownEvent{Round: round, Who: who, What: what, At: time.Now().UnixNano()}
	require.NoError(t, h.db.Table(h.ledgerT).Create(&ev).Error)
}

func (h *shutdownHarness) events(t *testing.T, round int) []shutdownEvent {
	t.Helper()
	var evs []shutdownEvent
	require.NoError(t, h.db.Table(h.ledgerT).Where("rnd = ?", round).Order("id").Find(&evs).Error)
	return evs
}

// awaitTakeover waits until the ledger shows a contender's hold after
// A's end, for up to the expiry plus 10 s.
func (h *shutdownHarness) awaitTakeover(t *testing.T, round int) {
	t.Helper()
	deadline := time.Now().Add(shutdownExpires + 10*time.Second)
	for time.Now().Before(deadline) {
		if judgeShutdown(h.events(t, round)).takeover != nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no contender held the name within %v after A's end", shutdownExpires+10*time.Second)
}

// report logs a scenario's overlaps and delays (min, median, max).
func (h *shutdownHarness) report(t *testing.T, kind string, overlaps int, key string, delays []time.Duration) {
	t.Helper()
	if len(delays) == 0 {
		return
	}
	slices.Sort(delays)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	report(t, kind, map[string]any{
		"db": h.tg.Name, "rounds": len(delays), "overlaps": overlaps, "expiry_s": shutdownExpires.Seconds(),
		key + "_min": ms(delays[0]), key + "_median": ms(delays[len(delays)/2]), key + "_max": ms(delays[len(delays)-1]),
	})
}

// shutdownVerdict is what the ledger of one round says.
type shutdownVerdict struct {
	overlaps  []string       // events that happened while another process held the name
	cancelled *shutdownEvent // A's fn saw its context end
	closed    *shutdownEvent // A's fn returned ("done"), or A was killed
	takeover  *shutdownEvent // the first contender hold after that
}

// judgeShutdown replays a round's events in id order. A hold runs from
// its holder's "in" to its "done" or "out", or to "killed", after which
// the dead holder's lock may be taken (when is checked against its
// expiry). An "in" while another hold runs, or a write by anyone but the
// holder, is an overlap.
func judgeShutdown(evs []shutdownEvent) shutdownVerdict {
	var v shutdownVerdict
	holder, dead := "", false
	for i := range evs {
		e := &evs[i]
		switch e.What {
		case "in":
			if holder != "" && !dead {
				v.overlaps = append(v.overlaps, fmt.Sprintf("%s in (#%d) while %s held the name", e.Who, e.ID, holder))
			}
			holder, dead = e.Who, false
			if e.Who != "A" && v.closed != nil && v.takeover == nil {
				v.takeover = e
			}
			continue
		case "killed":
			dead = holder == e.Who
			v.closed = e
			continue
		}
		if holder != e.Who {
			v.overlaps = append(v.overlaps, fmt.Sprintf("%s %s (#%d) while %s held the name", e.Who, e.What, e.ID, holderOrNobody(holder)))
		}
		switch {
		case e.Who == "A" && e.What == "cancelled":
			v.cancelled = e
		case e.Who == "A" && e.What == "done":
			v.closed = e
		}
		if (e.What == "done" || e.What == "out") && holder == e.Who {
			holder = ""
		}
	}
	return v
}

func holderOrNobody(h string) string {
	if h == "" {
		return "nobody"
	}
	return h
}
