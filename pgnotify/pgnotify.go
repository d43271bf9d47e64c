// Package pgnotify wakes lockmgr waiters across processes with PostgreSQL's
// LISTEN/NOTIFY. Give every process's Manager the same Listener option:
//
//	l, err := pgnotify.Listen(ctx, "postgres://…")
//	if err != nil { … }
//	defer l.Close()
//	m, err := lockmgr.New(db, lockmgr.WithNotifier(l))
//
// A Manager with a notifier announces each release and unlock in the same
// statement that deletes the row (pg_notify inside the DELETE's round
// trip); its waiters subscribe to those announcements and retry at once
// instead of at their next backoff. Notifications are a hint, never a
// guarantee: a waiter that misses one (say, while the listener reconnects)
// still gets the lock on its backoff schedule.
package pgnotify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Listener holds one dedicated PostgreSQL connection that LISTENs on the
// channels its subscribers need, reconnecting when the connection breaks.
// It implements lockmgr.Notifier. Close stops it.
type Listener struct {
	connString string
	cancel     context.CancelFunc
	done       chan struct{}

	mu         sync.Mutex
	subs       map[string]map[*func(string)]struct{}
	listening  map[string]bool    // channels LISTENed on the current connection
	interrupt  context.CancelFunc // interrupts the current wait, to LISTEN anew
	lastErrMsg string
}

// Listen connects to PostgreSQL with connString (a pgx connection string or
// URL) and starts listening. It returns the connection error, if any; later
// connection failures are retried in the background.
func Listen(ctx context.Context, connString string) (*Listener, error) {
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		return nil, errors.Join(errors.New("pgnotify: connect"), err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	l := &Listener{connString: connString, cancel: cancel, done: make(chan struct{}),
		subs: map[string]map[*func(string)]struct{}{}, listening: map[string]bool{}}
	go l.run(runCtx, conn)
	return l, nil
}

// Close stops listening and closes the connection. It waits until the
// listener's goroutine has ended; closing twice is harmless.
func (l *Listener) Close() error {
	l.cancel()
	<-l.done
	return nil
}

// Channel is the NOTIFY channel releases of table are announced on:
// "lockmgr_" + table, or a hash of it when that would exceed PostgreSQL's
// 63-byte identifier limit.
func (l *Listener) Channel(table string) string {
	ch := "lockmgr_" + table
	if len(ch) <= 63 {
		return ch
	}
	sum := sha256.Sum256([]byte(table))
	return "lockmgr_" + hex.EncodeToString(sum[:16])
}

// Subscribe calls fn with every lock name released on channel, from the
// listener's goroutine, until stop is called. fn must not block.
func (l *Listener) Subscribe(channel string, fn func(name string)) (stop func()) {
	p := &fn
	l.mu.Lock()
	if l.subs[channel] == nil {
		l.subs[channel] = map[*func(string)]struct{}{}
	}
	l.subs[channel][p] = struct{}{}
	if !l.listening[channel] && l.interrupt != nil {
		l.interrupt() // the loop LISTENs on the new channel, then waits again
	}
	l.mu.Unlock()
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		delete(l.subs[channel], p)
	}
}

func (l *Listener) dispatch(channel, name string) {
	l.mu.Lock()
	fns := make([]func(string), 0, len(l.subs[channel]))
	for p := range l.subs[channel] {
		fns = append(fns, *p)
	}
	l.mu.Unlock()
	for _, fn := range fns {
		fn(name)
	}
}

// run listens until ctx ends, reconnecting with backoff after failures.
func (l *Listener) run(ctx context.Context, conn *pgx.Conn) {
	defer close(l.done)
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		if conn == nil {
			var err error
			if conn, err = pgx.Connect(ctx, l.connString); err != nil {
				l.setErr(err)
				sleep(ctx, backoff)
				backoff = min(2*backoff, 5*time.Second)
				continue
			}
			backoff = 100 * time.Millisecond
		}
		if err := l.listenAndWait(ctx, conn); err != nil && ctx.Err() == nil {
			l.setErr(err)
			_ = conn.Close(context.Background())
			conn = nil
			l.mu.Lock()
			clear(l.listening)
			l.mu.Unlock()
		}
	}
	if conn != nil {
		_ = conn.Close(context.Background())
	}
}

// listenAndWait LISTENs on every subscribed channel, then dispatches
// notifications until a new channel needs LISTEN (nil) or the connection
// fails (its error).
func (l *Listener) listenAndWait(ctx context.Context, conn *pgx.Conn) error {
	if err := l.listenAll(ctx, conn); err != nil {
		return err
	}
	wctx, interrupt := context.WithCancel(ctx)
	defer interrupt()
	l.mu.Lock()
	l.interrupt = interrupt
	pending := l.pending()
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		l.interrupt = nil
		l.mu.Unlock()
	}()
	if pending {
		return nil
	}
	for {
		n, err := conn.WaitForNotification(wctx)
		if err != nil {
			if wctx.Err() != nil && ctx.Err() == nil {
				return nil // interrupted to LISTEN on a new channel
			}
			return err
		}
		l.dispatch(n.Channel, n.Payload)
	}
}

func (l *Listener) listenAll(ctx context.Context, conn *pgx.Conn) error {
	l.mu.Lock()
	var todo []string
	for ch := range l.subs {
		if !l.listening[ch] {
			todo = append(todo, ch)
		}
	}
	l.mu.Unlock()
	for _, ch := range todo {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
			return err
		}
		l.mu.Lock()
		l.listening[ch] = true
		l.mu.Unlock()
	}
	return nil
}

// pending reports a subscribed channel not yet LISTENed on; l.mu is held.
func (l *Listener) pending() bool {
	for ch := range l.subs {
		if !l.listening[ch] {
			return true
		}
	}
	return false
}

func (l *Listener) setErr(err error) {
	l.mu.Lock()
	l.lastErrMsg = err.Error()
	l.mu.Unlock()
}

// Err returns the last connection error the listener met and retried, or
// nil if it has met none.
func (l *Listener) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lastErrMsg == "" {
		return nil
	}
	return errors.New("pgnotify: " + l.lastErrMsg)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
