package lockmgr

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// observeHurry is how often Observe polls after it heard the lock
// released, until it sees the next leader (for at most a TTL).
const observeHurry = 25 * time.Millisecond

// Leader returns the current term of the election, in one statement, as
// the lock's row says (by the database's clock): ErrNoLeader when the
// lock is absent or expired. A leader that lost its lock without knowing
// (paused, partitioned) is reported until its lock expires.
func (e *Election) Leader(ctx context.Context) (Term, error) {
	if err := checkContext(ctx); err != nil {
		return Term{}, err
	}
	l, err := e.m.Get(ctx, e.name)
	switch {
	case errors.Is(err, ErrLockNotFound):
		return Term{}, fmt.Errorf("%w: election %q", ErrNoLeader, e.name)
	case err != nil:
		return Term{}, err
	}
	return Term{Identity: l.LockedBy, Fence: l.Fence, Since: l.CreatedAt}, nil
}

// Observe returns a channel that receives the current term, then each
// change of leader — the zero Term while there is none — until ctx ends,
// when it is closed; any process may observe, member or not. It polls
// Leader every third of the TTL, and at once when this process begins or
// ends a term or, with a Notifier (WithNotifier; a Watcher announces that
// this process waits for the name), when another process releases the
// lock, then every 25 ms until it sees the next leader: a handover is
// seen within milliseconds, a leader that crashed is replaced, and seen,
// within about TTL + TTL/3. The channel holds one Term: an observer that
// does not keep up misses intermediate terms and receives the latest,
// and never slows the election. Database errors are logged and retried.
func (e *Election) Observe(ctx context.Context) <-chan Term {
	ch := make(chan Term, 1)
	if ctx == nil {
		close(ch)
		return ch
	}
	wake := make(chan struct{}, 1)
	stop := e.listen(wake)
	go func() {
		defer close(ch)
		defer stop()
		e.observe(ctx, ch, wake)
	}()
	return ch
}

// observe polls the leader until ctx ends, publishing each change on ch.
func (e *Election) observe(ctx context.Context, ch chan Term, wake <-chan struct{}) {
	var last Term
	first := true
	var hurry time.Time // poll every observeHurry until then
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-wake:
			hurry = time.Now().Add(e.ttl)
		case <-timer.C:
		}
		t, err := e.Leader(ctx)
		switch {
		case err == nil || errors.Is(err, ErrNoLeader):
			if first || !t.same(last) {
				publish(ch, t)
				last, first = t, false
			}
			if err == nil {
				hurry = time.Time{}
			}
		case ctx.Err() != nil:
			return
		default:
			e.m.warn(ctx, "lockmgr: election observer cannot read the leader, retrying", e.name, err)
		}
		next := e.ttl / 3
		if time.Now().Before(hurry) {
			next = observeHurry
		}
		timer.Reset(next)
	}
}

// publish puts t on ch, replacing a term the observer has not taken yet.
func publish(ch chan Term, t Term) {
	for {
		select {
		case ch <- t:
			return
		default:
		}
		select {
		case <-ch:
		default:
		}
	}
}

// listen wakes wake when a term of this election begins or ends in this
// process, or when the notifier hears that the lock was released.
func (e *Election) listen(wake chan struct{}) (stop func()) {
	poke := func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	stops := []func(){observers.add(e.key(), poke)}
	if n := e.m.notifier; n != nil && e.m.channel != "" {
		stops = append(stops, n.Subscribe(e.m.channel, func(payload string) {
			if name, _ := parseNotice(payload, ""); name == e.name {
				poke()
			}
		}))
		if w, ok := n.(Watcher); ok {
			stops = append(stops, w.Watch(e.m.channel, e.name))
		}
	}
	return func() {
		for _, s := range stops {
			s()
		}
	}
}

func (e *Election) key() waitKey { return waitKey{e.m.dbID, e.m.tableName, e.name} }

// observers is the process-wide registry of Observe calls, so that a term
// beginning or ending in this process is seen by every observer of it here
// at once, whichever Election value runs it.
var observers = &observerSet{byKey: map[waitKey]map[*func()]struct{}{}}

type observerSet struct {
	mu    sync.Mutex
	byKey map[waitKey]map[*func()]struct{}
}

func (o *observerSet) add(k waitKey, poke func()) (stop func()) {
	p := &poke
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.byKey[k] == nil {
		o.byKey[k] = map[*func()]struct{}{}
	}
	o.byKey[k][p] = struct{}{}
	return func() {
		o.mu.Lock()
		defer o.mu.Unlock()
		delete(o.byKey[k], p)
		if len(o.byKey[k]) == 0 {
			delete(o.byKey, k)
		}
	}
}

func (o *observerSet) nudge(k waitKey) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for p := range o.byKey[k] {
		(*p)()
	}
}
