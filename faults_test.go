package lockmgr_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"gorm.io/gorm"

	"github.com/gormlock/lockmgr"
)

// The fault-injection suite: every lock call, its context cut at every
// point of its life, and the same invariants judged after each case by
// the test, not by the library's answers:
//
//   - no name is left held by a token nobody has, once a bounded cleanup
//     moment (faultCleanup) has passed: every lock a call handed back and
//     every lock the case set up is released by its token, and then no
//     name of the case may be locked;
//   - no two holders: a lock a call reports won is held (another Manager
//     cannot take the name), and a scope keeps its lock while fn runs;
//   - no call answers later than faultMargin after its context ended;
//   - no goroutine is left (goleak, per database).
//
// The cut points are: the context ended before the call; before each lock
// statement the call sends; after each one has run on the server and
// before lockmgr reads its reply (in GORM callbacks on a Manager with
// WithGORMCallbacks, and on the default path, which sends its statements on
// the pool past GORM's callbacks, in a database/sql driver wrapping the
// real one: faults_driver_test.go); during a wait; during a scope's
// keep-alive; and with another open transaction holding the row. The
// random-deadline part cuts every call on the default path at random
// moments around its own duration, the way the bug was first measured.
//
// LOCKMGR_FAULTS=long repeats the random-deadline part 300 times per call
// instead of 20, and runs the open-transaction part at four deadlines.
// TestFaultCheckerCatchesOrphans and TestFaultCheckerCatchesDriverCut are
// the controls: a caller that drops a lock it won is reported by the same
// checker.

const (
	// faultCleanup bounds the moment a lock given back after its caller
	// gave up may take to go: an attempt whose outcome was unknown is
	// released once more a second later (docs/concepts.md).
	faultCleanup = 3 * time.Second
	// faultMargin is how long after its context ended a call may answer:
	// one statement run to its reply and the give-back of what it won, on
	// a loaded machine.
	faultMargin = 1500 * time.Millisecond
)

// faultKey marks a context that a faultPlan may cut.
type faultKey struct{}

// faultPlan cuts its context before or after the at-th lock statement
// sent under it (from 1), and counts the statements.
type faultPlan struct {
	before bool
	at     int32
	seen   atomic.Int32
	cancel context.CancelFunc
	cutAt  atomic.Int64 // UnixNano of the cut, 0 before
}

func (p *faultPlan) cut() {
	p.cutAt.CompareAndSwap(0, time.Now().UnixNano())
	p.cancel()
}

// cutTime is when the plan cut its context, or zero.
func (p *faultPlan) cutTime() time.Time {
	if n := p.cutAt.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// faultContext is a context p cuts; p.at == 0 only counts.
func faultContext(p *faultPlan) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	return context.WithValue(ctx, faultKey{}, p)
}

// installFaults registers on e.db the callbacks that run faultPlans, and
// returns a Manager whose statements they see.
func installFaults(t *testing.T, e *env) *lockmgr.Manager {
	t.Helper()
	hook := func(before bool) func(db *gorm.DB) {
		return func(db *gorm.DB) {
			p, ok := db.Statement.Context.Value(faultKey{}).(*faultPlan)
			if !ok {
				return
			}
			n := p.seen.Load()
			if before {
				n = p.seen.Add(1)
			}
			if p.at != 0 && p.before == before && n == p.at {
				p.cut()
			}
		}
	}
	name := "lockmgr_test:faults:" + e.table
	require.NoError(t, e.db.Callback().Raw().Before("gorm:raw").Register(name+":before", hook(true)))
	require.NoError(t, e.db.Callback().Row().Before("gorm:row").Register(name+":before", hook(true)))
	require.NoError(t, e.db.Callback().Raw().After("gorm:raw").Register(name+":after", hook(false)))
	require.NoError(t, e.db.Callback().Row().After("gorm:row").Register(name+":after", hook(false)))
	t.Cleanup(func() {
		for _, s := range []string{":before", ":after"} {
			_ = e.db.Callback().Raw().Remove(name + s)
			_ = e.db.Callback().Row().Remove(name + s)
		}
	})
	m := e.manager(lockmgr.WithGORMCallbacks())
	_, err := m.IsLocked(e.ctx, "warm-up") // first-use checks run before any cut
	require.NoError(t, err)
	return m
}

// verifyNoLeaks checks that a part of the suite left no goroutine of its
// own: the MySQL driver's per-connection watcher lives as long as the
// shared pool's connection (TestMain checks once the pools are closed).
func verifyNoLeaks(t *testing.T) {
	goleak.VerifyNone(t, goleak.IgnoreCurrent(),
		goleak.IgnoreTopFunction("github.com/go-sql-driver/mysql.(*mysqlConn).startWatcher.func1"))
}

// faultCase is one lock call: setup puts its names in the state the call
// needs (with the uncut Manager e.m) and returns the locks it took; run
// makes the call with the faulting Manager and returns what it handed
// back.
type faultCase struct {
	name  string
	setup func(e *env, name string) []*lockmgr.Lock
	run   func(ctx context.Context, m *lockmgr.Manager, name string, set []*lockmgr.Lock) ([]*lockmgr.Lock, error)
	// names are the names the call touches, from the case's own.
	names func(name string) []string
}

// firstOf is the first of two results.
func firstOf[T, U any](v T, _ U) T { return v }

func one(name string) []string { return []string{name} }

func heldBy(e *env, name string) []*lockmgr.Lock {
	l, err := e.m.GetLock(e.ctx, name)
	require.NoError(e.t, err)
	return []*lockmgr.Lock{l}
}

func free(*env, string) []*lockmgr.Lock { return nil }

func gotLock(l *lockmgr.Lock, err error) ([]*lockmgr.Lock, error) {
	if err != nil {
		return nil, err
	}
	return []*lockmgr.Lock{l}, nil
}

func faultCases() []faultCase {
	return []faultCase{
		{name: "GetLock", setup: free, names: one,
			run: func(ctx context.Context, m *lockmgr.Manager, name string, _ []*lockmgr.Lock) ([]*lockmgr.Lock, error) {
				return gotLock(m.GetLock(ctx, name))
			}},
		{name: "GetLock NoExpiry", setup: free, names: one,
			run: func(ctx context.Context, m *lockmgr.Manager, name string, _ []*lockmgr.Lock) ([]*lockmgr.Lock, error) {
				return gotLock(m.GetLock(ctx, name, lockmgr.NoExpiry()))
			}},
		{name: "GetLock Wait", setup: free, names: one,
			run: func(ctx context.Context, m *lockmgr.Manager, name string, _ []*lockmgr.Lock) ([]*lockmgr.Lock, error) {
				return gotLock(m.GetLock(ctx, name, lockmgr.Wait(time.Minute)))
			}},
		{name: "Release", setup: heldBy, names: one,
			run: func(ctx context.Context, m *lockmgr.Manager, _ string, set []*lockmgr.Lock) ([]*lockmgr.Lock, error) {
				return nil, m.Release(ctx, set[0])
			}},
		{name: "Renew", setup: heldBy, names: one,
			run: func(ctx context.Context, m *lockmgr.Manager, _ string, set []*lockmgr.Lock) ([]*lockmgr.Lock, error) {
				return gotLock(m.Renew(ctx, set[0]))
			}},
		{name: "Unlock", setup: heldBy, names: one,
			run: func(ctx context.Context, m *lockmgr.Manager, name string, _ []*lockmgr.Lock) ([]*lockmgr.Lock, error) {
				return nil, m.Unlock(ctx, name)
			}},
		{name: "RenewLock", setup: heldBy, names: one,
			run: func(ctx context.Context, m *lockmgr.Manager, name string, _ []*lockmgr.Lock) ([]*lockmgr.Lock, error) {
				return gotLock(m.RenewLock(ctx, name))
			}},
		{name: "RenewLock Create", setup: free, names: one,
			run: func(ctx context.Context, m *lockmgr.Manager, name string, _ []*lockmgr.Lock) ([]*lockmgr.Lock, error) {
				return gotLock(m.RenewLock(ctx, name, lockmgr.Create()))
			}},
		{name: "SetLock",
			setup: func(e *env, name string) []*lockmgr.Lock { return heldBy(e, name+":held") },
			names: func(name string) []string { return []string{name + ":a", name + ":b", name + ":held"} },
			run: func(ctx context.Context, m *lockmgr.Manager, name string, _ []*lockmgr.Lock) ([]*lockmgr.Lock, error) {
				res, err := m.SetLock(ctx, []string{name + ":a", name + ":held", name + ":b"})
				if err != nil {
					return nil, err
				}
				return res.Locks, nil
			}},
		{name: "CleanLocks",
			setup: func(e *env, name string) []*lockmgr.Lock {
				set := heldBy(e, name)
				e.expire(name)
				return set
			}, names: one,
			run: func(ctx context.Context, m *lockmgr.Manager, _ string, _ []*lockmgr.Lock) ([]*lockmgr.Lock, error) {
				_, err := m.CleanLocks(ctx)
				return nil, err
			}},
		{name: "Acquire", setup: free, names: one,
			run: func(ctx context.Context, m *lockmgr.Manager, name string, _ []*lockmgr.Lock) ([]*lockmgr.Lock, error) {
				s, err := m.Acquire(ctx, name)
				if err != nil {
					return nil, err
				}
				return nil, s.Close() // closed: its lock must be gone
			}},
		{name: "Do", setup: free, names: one,
			run: func(ctx context.Context, m *lockmgr.Manager, name string, _ []*lockmgr.Lock) ([]*lockmgr.Lock, error) {
				return nil, m.Do(ctx, name, func(context.Context, *lockmgr.Scope) error { return nil })
			}},
		{name: "Scope.Lock", setup: free,
			names: func(name string) []string { return []string{name, name + ":extra"} },
			run: func(ctx context.Context, m *lockmgr.Manager, name string, _ []*lockmgr.Lock) ([]*lockmgr.Lock, error) {
				s, err := m.Acquire(context.Background(), name) // uncut: the cut is the extra lock's
				if err != nil {
					return nil, err
				}
				return nil, errors.Join(s.Lock(ctx, name+":extra"), s.Close())
			}},
	}
}

// faultLedger collects the suite's findings on one database.
type faultLedger struct {
	mu         sync.Mutex
	cases      int
	failed     int // calls that returned an error
	orphans    []string
	twoHolders []string
	late       []string
	worst      time.Duration // the latest answer after a context ended
}

func (f *faultLedger) add(list *[]string, format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	*list = append(*list, fmt.Sprintf(format, args...))
}

// answered records a call that answered at done, its context having ended
// at cut (zero: never).
func (f *faultLedger) answered(what string, cut, done time.Time, err error) {
	f.mu.Lock()
	f.cases++
	if err != nil {
		f.failed++
	}
	var late time.Duration
	if !cut.IsZero() {
		late = done.Sub(cut)
		f.worst = max(f.worst, late)
	}
	f.mu.Unlock()
	if late > faultMargin {
		f.add(&f.late, "%s: answered %v after its context ended", what, late)
	}
}

func (f *faultLedger) report(t *testing.T, kind, part string) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	t.Logf("faults %s %s: %d cases, %d failed, %d orphans, %d two holders, %d late, worst answer %v after the context ended",
		kind, part, f.cases, f.failed, len(f.orphans), len(f.twoHolders), len(f.late), f.worst.Round(time.Millisecond))
	assert.Empty(t, f.orphans, "names held by a token nobody has")
	assert.Empty(t, f.twoHolders, "two holders")
	assert.Empty(t, f.late, "answers past the context's end")
}

// settleFault judges a case once its call returned: the locks the call handed
// back must be held (nobody else can take them), then every lock anyone
// was handed is released by its token, and then, within faultCleanup, no
// name of the case may be locked: what is, is held by a token nobody has.
func settleFault(e *env, other *lockmgr.Manager, f *faultLedger, what string, names []string, got, set []*lockmgr.Lock) {
	ctx := context.Background()
	for _, l := range got {
		if l == nil {
			continue
		}
		if stolen, err := other.GetLock(ctx, l.Name); err == nil {
			f.add(&f.twoHolders, "%s: %q reported held, and another Manager took it", what, l.Name)
			_ = other.Release(ctx, stolen)
		}
	}
	for _, l := range slices.Concat(got, set) {
		if l != nil && l.Token != "" {
			if err := other.Release(ctx, l); err != nil && !errors.Is(err, lockmgr.ErrNotHeld) {
				e.t.Errorf("%s: release %q: %v", what, l.Name, err)
			}
		}
	}
	deadline := time.Now().Add(faultCleanup)
	for _, name := range names {
		for {
			held, err := other.IsLocked(ctx, name)
			require.NoError(e.t, err)
			if !held {
				break
			}
			if time.Now().After(deadline) {
				f.add(&f.orphans, "%s: %q still held %v after every holder released it", what, name, faultCleanup)
				_ = other.Unlock(ctx, name)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// TestFaultsAtEveryStatement: each call, cut before it starts, before each
// of its statements and after each has run on the server: on a Manager
// with GORM callbacks (the cut in a callback), and on lockmgr's default
// path (the cut in a driver that wraps the real one, faultDB).
func TestFaultsAtEveryStatement(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		defer verifyNoLeaks(t)
		other := e.manager()
		for _, path := range []struct {
			name string
			m    *lockmgr.Manager
		}{{"gorm callbacks", installFaults(t, e)}, {"driver", firstOf(faultDB(t, e))}} {
			var f faultLedger
			cutEveryStatement(e, path.m, other, &f)
			f.report(t, strings.Split(t.Name(), "/")[1], "at every statement ("+path.name+")")
		}
	})
}

// cutEveryStatement runs every faultCase with m, once uncut to count its
// statements, then cut before the call and before and after each of them.
func cutEveryStatement(e *env, m, other *lockmgr.Manager, f *faultLedger) {
	t := e.t
	for _, c := range faultCases() {
		dry := &faultPlan{}
		name := c.name + ":count"
		set := c.setup(e, name)
		got, err := c.run(faultContext(dry), m, name, set)
		require.NoError(t, err, "%s uncut", c.name)
		settleFault(e, other, f, c.name+" uncut", c.names(name), got, set)
		n := dry.seen.Load()
		require.Positive(t, n, "%s sends statements the cut sees", c.name)

		plans := []*faultPlan{{before: true, at: -1}} // cut before the call
		for k := int32(1); k <= n; k++ {
			plans = append(plans, &faultPlan{before: true, at: k}, &faultPlan{at: k})
		}
		for _, p := range plans {
			what := fmt.Sprintf("%s, cut %s statement %d of %d", c.name, map[bool]string{true: "before", false: "after"}[p.before], p.at, n)
			name := fmt.Sprintf("%s:%t:%d", c.name, p.before, p.at)
			set := c.setup(e, name)
			ctx := faultContext(p)
			if p.at < 0 {
				p.cut()
			}
			got, err := c.run(ctx, m, name, set)
			f.answered(what, p.cutTime(), time.Now(), err)
			settleFault(e, other, f, what, c.names(name), got, set)
			p.cancel()
		}
	}
}

// TestFaultsDuringWaitAndKeepAlive: a waiter cut while another holds the
// name, and scopes whose context ends while their keep-alive runs.
func TestFaultsDuringWaitAndKeepAlive(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		defer verifyNoLeaks(t)
		other := e.manager()
		var f faultLedger
		waits := map[string]func(ctx context.Context, name string) ([]*lockmgr.Lock, error){
			"GetLock Wait": func(ctx context.Context, name string) ([]*lockmgr.Lock, error) {
				return gotLock(e.m.GetLock(ctx, name, lockmgr.Wait(time.Minute)))
			},
			"Acquire Wait": func(ctx context.Context, name string) ([]*lockmgr.Lock, error) {
				s, err := e.m.Acquire(ctx, name, lockmgr.Wait(time.Minute))
				if err != nil {
					return nil, err
				}
				return nil, s.Close()
			},
			"Do Wait": func(ctx context.Context, name string) ([]*lockmgr.Lock, error) {
				return nil, e.m.Do(ctx, name, func(context.Context, *lockmgr.Scope) error { return nil }, lockmgr.Wait(time.Minute))
			},
		}
		for what, wait := range waits {
			// Cut mid-wait; and cut as the holder lets go, so that the
			// waiter's wake-up and its cut race.
			for _, release := range []bool{false, true} {
				name := fmt.Sprintf("%s:%t", what, release)
				set := heldBy(e, name)
				ctx, cancel := context.WithCancel(context.Background())
				cutAt := make(chan time.Time, 1)
				time.AfterFunc(150*time.Millisecond, func() {
					if release {
						_ = e.m.Release(context.Background(), set[0])
					}
					cutAt <- time.Now()
					cancel()
				})
				got, err := wait(ctx, name)
				done := time.Now()
				f.answered(what, <-cutAt, done, err)
				settleFault(e, other, &f, what, one(name), got, set)
				cancel()
			}
		}

		// Keep-alive: the parent context ends while fn runs past the
		// expiry; the lock must stay held, then go when fn returns.
		const expires = 600 * time.Millisecond
		ctx, cancel := context.WithCancel(context.Background())
		err := e.m.Do(ctx, "do:keepalive", func(sctx context.Context, s *lockmgr.Scope) error {
			time.Sleep(expires / 2)
			cancel()
			<-sctx.Done()
			for end := time.Now().Add(2 * expires); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
				if l, err := other.GetLock(context.Background(), "do:keepalive"); err == nil {
					f.add(&f.twoHolders, "Do: taken while fn ran after its context ended")
					_ = other.Release(context.Background(), l)
				}
			}
			return nil
		}, lockmgr.Expires(expires))
		f.answered("Do keep-alive", time.Time{}, time.Now(), err)
		require.NoError(t, err)
		settleFault(e, other, &f, "Do keep-alive", one("do:keepalive"), nil, nil)

		actx, acancel := context.WithCancel(context.Background())
		s, err := e.m.Acquire(actx, "acquire:keepalive", lockmgr.Expires(expires))
		require.NoError(t, err)
		acancel()
		<-s.Context().Done()
		for end := time.Now().Add(2 * expires); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			if l, err := other.GetLock(context.Background(), "acquire:keepalive"); err == nil {
				f.add(&f.twoHolders, "Acquire: taken before Close after its context ended")
				_ = other.Release(context.Background(), l)
			}
		}
		require.NoError(t, s.Close())
		settleFault(e, other, &f, "Acquire keep-alive", one("acquire:keepalive"), nil, nil)
		f.report(t, path.Base(t.Name()), "during wait and keep-alive")
	})
}

// TestFaultsBehindOpenTransaction: every call on a name whose row another
// open transaction holds, with a short deadline; then the transaction
// commits and the invariants are judged.
func TestFaultsBehindOpenTransaction(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		defer verifyNoLeaks(t)
		other := e.manager()
		var f faultLedger
		// 150 ms by default; the long form adds a deadline past a statement's
		// lock-wait bound (50 ms) and past holderPatience (2 s), the longest a
		// release, renewal or SetLock asks again behind a held row.
		deadlines := []time.Duration{150 * time.Millisecond}
		if os.Getenv("LOCKMGR_FAULTS") == "long" {
			deadlines = append(deadlines, 20*time.Millisecond, time.Second, 2500*time.Millisecond)
		}
		for _, deadline := range deadlines {
			behindOpenTx(e, other, &f, deadline)
		}
		f.report(t, path.Base(t.Name()), fmt.Sprintf("behind an open transaction (deadlines %v)", deadlines))
	})
}

// behindOpenTx runs each faultCase while another open transaction holds
// each row it touches, with the given deadline; then the transaction
// rolls back and the invariants are judged.
func behindOpenTx(e *env, other *lockmgr.Manager, f *faultLedger, deadline time.Duration) {
	t := e.t
	for _, c := range faultCases() {
		if c.name == "Scope.Lock" || c.name == "CleanLocks" {
			continue // CleanLocks skips a held row; Scope.Lock is GetLock's path
		}
		what := fmt.Sprintf("%s behind an open transaction, deadline %v", c.name, deadline)
		name := fmt.Sprintf("%s:behind:%v", c.name, deadline)
		set := c.setup(e, name)
		tx := e.db.Begin()
		require.NoError(t, tx.Error)
		// The open transaction holds each of the case's names' rows: it
		// renews those set up, and takes the free ones.
		var txLocks []*lockmgr.Lock
		for _, n := range c.names(name) {
			i := slices.IndexFunc(set, func(l *lockmgr.Lock) bool { return l.Name == n })
			if i >= 0 {
				_, err := e.m.WithTx(tx).Renew(e.ctx, set[i])
				require.NoError(t, err)
				continue
			}
			l, err := e.m.WithTx(tx).GetLock(e.ctx, n)
			require.NoError(t, err)
			txLocks = append(txLocks, l)
		}
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		start := time.Now()
		got, err := c.run(ctx, e.m, name, set)
		done := time.Now()
		if end := start.Add(deadline); done.After(end) {
			f.answered(what, end, done, err)
		} else {
			f.answered(what, time.Time{}, done, err)
		}
		cancel()
		require.NoError(t, tx.Rollback().Error)
		_ = txLocks // rolled back with the transaction
		settleFault(e, other, f, what, c.names(name), got, set)
	}
}

// TestFaultsAtRandomDeadlines: every call of faultCases on lockmgr's
// default path, with deadlines drawn between 0 and twice its own duration,
// as the orphan bug was first measured (issue: of the calls that failed, 9
// of 26 on SQLite, 19 of 31 on PostgreSQL and 35 of 37 on MariaDB left the
// lock held by nobody); plus GetLock with a Wait shorter than the draw.
func TestFaultsAtRandomDeadlines(t *testing.T) {
	rounds := 20
	if os.Getenv("LOCKMGR_FAULTS") == "long" {
		rounds = 300
	}
	eachDB(t, func(t *testing.T, e *env) {
		defer verifyNoLeaks(t)
		other := e.manager()
		var f faultLedger
		cases := append(faultCases(), faultCase{name: "GetLock Wait(50ms)", setup: free, names: one,
			run: func(ctx context.Context, m *lockmgr.Manager, name string, _ []*lockmgr.Lock) ([]*lockmgr.Lock, error) {
				return gotLock(m.GetLock(ctx, name, lockmgr.Wait(50*time.Millisecond)))
			}})
		for _, c := range cases {
			// The call's own duration, uncut.
			var took []time.Duration
			for i := range 5 {
				name := fmt.Sprintf("%s:warm:%d", c.name, i)
				set := c.setup(e, name)
				start := time.Now()
				got, err := c.run(context.Background(), e.m, name, set)
				took = append(took, time.Since(start))
				require.NoError(t, err, c.name)
				settleFault(e, other, &f, c.name, c.names(name), got, set)
			}
			slices.Sort(took)
			typical := took[len(took)/2]
			for i := range rounds {
				name := fmt.Sprintf("%s:%d", c.name, i)
				set := c.setup(e, name)
				d := time.Duration(rand.Int64N(int64(2*typical) + 1))
				ctx, cancel := context.WithTimeout(context.Background(), d)
				start := time.Now()
				got, err := c.run(ctx, e.m, name, set)
				done := time.Now()
				cancel()
				cut := start.Add(d)
				if done.Before(cut) {
					cut = time.Time{}
				}
				f.answered(c.name, cut, done, err)
				settleFault(e, other, &f, fmt.Sprintf("%s, deadline %v", c.name, d), c.names(name), got, set)
			}
		}
		f.report(t, path.Base(t.Name()), fmt.Sprintf("at random deadlines (%d rounds a call)", rounds))
	})
}
