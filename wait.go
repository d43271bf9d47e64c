package lockmgr

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"sync"
	"time"
)

// Backoff bounds for Wait: the first retry comes after about waitMin, each
// later one after up to twice the last, never more than waitMax (variables
// only so that tests can tell a wake-up from a retry).
var (
	waitMin = minBackoff
	waitMax = time.Second
)

// acquire is tryAcquire, retried while the name is held and c.wait allows.
// It also returns when the winning attempt was sent: the lock lasts at
// least until then plus its expiry, by this process's monotonic clock.
func (m *Manager) acquire(ctx context.Context, name string, c *lockConfig) (l *Lock, sent time.Time, err error) {
	ctx, end := m.begin(ctx, "acquire", name)
	defer func() { end(l, err) }()
	start := time.Now()
	l, err = m.tryAcquire(ctx, name, c, start)
	if c.wait <= 0 || !m.waitable(err) {
		return l, start, err
	}
	return m.waitAcquire(ctx, name, c, start)
}

// waitable reports an attempt that Wait tries again: the name was held,
// or the database kept rolling the attempt back (a deadlock, a Galera
// certification conflict), which a later attempt gets past.
func (m *Manager) waitable(err error) bool {
	return errors.Is(err, ErrLocked) || m.d.eng.Retryable(err, m.inTx)
}

// waitAcquire sleeps with jittered exponential backoff between attempts,
// waking early when a release of name is seen, and makes its last attempt
// at the deadline, never after it. The waiters of one name in this process
// queue in the order they began waiting, and a release wakes the first of
// them only (wakeOne); a waiter that was woken and leaves without the lock
// passes the wake-up on, so a free lock never waits for a backoff while a
// waiter of this process could take it.
func (m *Manager) waitAcquire(ctx context.Context, name string, c *lockConfig, start time.Time) (l *Lock, sent time.Time, err error) {
	deadline := start.Add(c.wait)
	w := &waiter{wake: make(chan struct{}, 1)}
	// woken: a release was seen since the last attempt that found the name
	// held, so the lock may be free now.
	woken := false
	defer func() {
		if l == nil && (woken || len(w.wake) > 0) {
			local.wakeOne(m.dbID, m.tableName, name)
		}
	}()
	defer m.subscribe(name, w)()
	m.checkNotifier(ctx)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	step := waitMin
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return nil, time.Time{}, heldError(name)
		}
		timer.Reset(min(jitter(step), left))
		select {
		case <-ctx.Done():
			return nil, time.Time{}, errors.Join(heldError(name), context.Cause(ctx))
		case <-w.wake:
			step, woken = waitMin, true
		case <-timer.C:
			step = min(2*step, waitMax)
		}
		sent = time.Now()
		l, err = m.tryAcquire(ctx, name, c, start)
		if err != nil && ctx.Err() != nil {
			return nil, time.Time{}, errors.Join(heldError(name), context.Cause(ctx))
		}
		if !m.waitable(err) {
			return l, sent, err
		}
		if errors.Is(err, ErrLocked) {
			woken = false // held again: its release will wake this queue
		}
	}
}

// subscribe queues w behind this process's other waiters of name, so that
// a release of name by this process, or by another one the notifier hears
// from, wakes it in turn; with a Watcher notifier it also tells other
// processes that this one waits, so that their releases notify.
func (m *Manager) subscribe(name string, w *waiter) (stop func()) {
	stopLocal := local.subscribe(m.dbID, m.tableName, name, w)
	if m.notifier == nil || m.channel == "" {
		return stopLocal
	}
	stopRemote := remote.subscribe(m.notifier, m.notifierID(), m.dbID, m.channel, m.tableName)
	stopWatch := func() {}
	if wn, ok := m.notifier.(Watcher); ok {
		stopWatch = wn.Watch(m.channel, name)
	}
	return func() { stopWatch(); stopRemote(); stopLocal() }
}

// A waiter is one waitAcquire in the local queue of its name.
type waiter struct {
	wake chan struct{} // capacity 1: a wake-up not yet taken
}

// local is the process-wide registry of waiters, keyed by database handle
// (databaseID), table and name, so that a release by any Manager reaches
// waiters of every Manager on the same table in this process at once.
var local = &waiters{queues: map[waitKey][]*waiter{}}

type waiters struct {
	mu     sync.Mutex
	queues map[waitKey][]*waiter // in the order they began waiting
}

type waitKey struct {
	db          any
	table, name string
}

func (ws *waiters) subscribe(db any, table, name string, w *waiter) (stop func()) {
	key := waitKey{db, table, name}
	ws.mu.Lock()
	ws.queues[key] = append(ws.queues[key], w)
	ws.mu.Unlock()
	return func() {
		ws.mu.Lock()
		defer ws.mu.Unlock()
		q := slices.DeleteFunc(ws.queues[key], func(o *waiter) bool { return o == w })
		if len(q) == 0 {
			delete(ws.queues, key)
		} else {
			ws.queues[key] = q
		}
	}
}

// wakeOne wakes the first waiter of name without a wake-up pending: one
// release, one attempt. A waiter busy with an attempt is woken too, as its
// attempt may have found the name held just before the release.
func (ws *waiters) wakeOne(db any, table, name string) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	for _, w := range ws.queues[waitKey{db, table, name}] {
		select {
		case w.wake <- struct{}{}:
			return
		default:
		}
	}
}

// remote holds one notifier subscription per notifier, channel and table
// while this process has waiters on it; each release it hears of wakes one
// local waiter of the name, as a release in this process does.
var remote = &remoteSubs{subs: map[remoteKey]*remoteSub{}}

type remoteKey struct {
	id             any // the notifier, or its Manager's stand-in (notifierID)
	db             any // databaseID
	channel, table string
}

type remoteSub struct {
	refs int
	stop func()
}

type remoteSubs struct {
	mu   sync.Mutex
	subs map[remoteKey]*remoteSub
}

func (r *remoteSubs) subscribe(n Notifier, id any, db *dbHandle, channel, table string) (stop func()) {
	key := remoteKey{id, db, channel, table}
	origin := originOf(db)
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.subs[key]
	if s == nil {
		s = &remoteSub{stop: n.Subscribe(channel, func(payload string) {
			if name, own := parseNotice(payload, origin); !own {
				local.wakeOne(db, table, name)
			}
		})}
		r.subs[key] = s
	}
	s.refs++
	return sync.OnceFunc(func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if s.refs--; s.refs == 0 {
			delete(r.subs, key)
			s.stop()
		}
	})
}

// originOf is the mark of the release notices sent through one database
// handle of this process: their payload is the mark followed by the name.
// The waiters of that handle were woken when it released, so its
// subscription ignores its own notices, which would wake a second waiter
// to find the name taken again; another handle's notices wake its waiters.
func originOf(db *dbHandle) string { return db.origin }

// originLen is the length of a notice's mark: "\x1e", 16 hex digits, "\x1e".
const originLen = 18

// parseNotice splits a notice's payload into the released name and
// whether it carries the mark origin. A payload without a mark (sent by
// hand, or by another tool) is a bare name.
func parseNotice(payload, origin string) (name string, own bool) {
	if len(payload) > originLen && payload[0] == '\x1e' && payload[originLen-1] == '\x1e' {
		return payload[originLen:], payload[:originLen] == origin
	}
	return payload, false
}

// notifierID identifies m's notifier in remote: the notifier itself when it
// is a pointer, so that Managers sharing one share its subscription, else a
// pointer unique to m and its copies (a value may not be comparable).
func (m *Manager) notifierID() any {
	if reflect.ValueOf(m.notifier).Kind() == reflect.Pointer {
		return m.notifier
	}
	return m.notifyWarned
}

func wakeLocal(db any, table, name string) { local.wakeOne(db, table, name) }
