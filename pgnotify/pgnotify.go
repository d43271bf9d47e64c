package pgnotify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Listener holds one dedicated PostgreSQL connection that LISTENs on the
// channels its subscribers need, reconnecting when the connection breaks.
// It implements lockmgr.Notifier. Close stops it.
type Listener struct {
	connString string
	cfg        config
	probe      string // the listener's own channel for delivery probes
	cancel     context.CancelFunc
	done       chan struct{}

	mu        sync.Mutex
	subs      map[string]map[*func(string)]struct{}
	listening map[string]bool // channels LISTENed on the current connection
	watches   map[watchKey]*watchState
	interrupt context.CancelFunc // interrupts the current wait, to LISTEN anew
	problem   error              // why notifications are not delivered now

	onListen func(*pgx.Conn) // tests: called on each connection once it listens
}

// Listen connects to PostgreSQL with connString (a pgx connection string or
// URL), checks that notifications reach the connection, and starts
// listening. It returns the connection error, or an error matching
// ErrNotDelivered when the connection is not a session of its own (a
// transaction pooler) or a notification sent through another connection
// did not arrive within the probe timeout; then it leaves nothing behind.
// Later failures are retried in the background and reported by Err.
func Listen(ctx context.Context, connString string, opts ...Option) (*Listener, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	l := &Listener{connString: connString, cfg: cfg, probe: probeChannel(), done: make(chan struct{}),
		subs: map[string]map[*func(string)]struct{}{}, listening: map[string]bool{},
		watches: map[watchKey]*watchState{}}
	conn, err := l.connect(ctx)
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	go l.run(runCtx, conn)
	return l, nil
}

// Close stops listening, UNLISTENs and closes the connection. It waits
// until the listener's goroutine has ended; closing twice is harmless.
func (l *Listener) Close() error {
	if l.cancel == nil {
		return nil
	}
	l.cancel()
	<-l.done
	l.mu.Lock()
	l.problem = errClosed
	l.mu.Unlock()
	return nil
}

var errClosed = fmt.Errorf("%w: the listener is closed", ErrNotDelivered)

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

// Subscribe calls fn with the payload of each notice on channel (the
// released name, with the prefix lockmgr.Notifier describes), from the
// listener's goroutine, until stop is called. fn must not block. It hears
// the releases of watched names only, not every release: a Manager with a
// Listener announces a release only while some process watches its name
// (Watch, which lockmgr calls while it waits for the name).
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
			if conn, err = l.connect(ctx); err != nil {
				l.report(err)
				sleep(ctx, backoff)
				backoff = min(2*backoff, 5*time.Second)
				continue
			}
		}
		connected := time.Now()
		if err := l.listenAndWait(ctx, conn); err != nil && ctx.Err() == nil {
			if !errors.Is(err, ErrNotDelivered) {
				err = fmt.Errorf("pgnotify: %w", err)
			}
			l.report(err)
			l.hangUp(conn)
			conn = nil
			if time.Since(connected) < time.Second { // a connection that fails at once: back off
				sleep(ctx, backoff)
				backoff = min(2*backoff, 5*time.Second)
			} else {
				backoff = 100 * time.Millisecond
			}
		}
	}
	if conn != nil {
		l.hangUp(conn)
	}
}

// hangUp UNLISTENs and closes conn, and forgets what it listened on.
func (l *Listener) hangUp(conn *pgx.Conn) {
	unlisten(conn)
	_ = conn.Close(context.Background())
	l.mu.Lock()
	clear(l.listening)
	l.dropWatches()
	l.mu.Unlock()
}

// listenAndWait LISTENs on every subscribed channel and takes the locks of
// watched names, then dispatches notifications and probes delivery, until
// the connection fails or stops delivering (its error) or ctx ends.
func (l *Listener) listenAndWait(ctx context.Context, conn *pgx.Conn) error {
	p := newProber(l.cfg)
	for ctx.Err() == nil {
		if err := l.listenAll(ctx, conn); err != nil {
			return err
		}
		if err := l.syncWatches(ctx, conn); err != nil {
			return err
		}
		wctx, interrupt := context.WithCancel(ctx)
		l.mu.Lock()
		l.interrupt = interrupt
		lock, unlock, _ := l.watchWork(time.Now())
		pending, onListen := l.pending() || len(lock)+len(unlock) > 0, l.onListen
		l.mu.Unlock()
		err := error(nil)
		if !pending {
			if onListen != nil {
				onListen(conn)
			}
			err = l.wait(ctx, wctx, conn, p)
		}
		l.mu.Lock()
		l.interrupt = nil
		l.mu.Unlock()
		interrupt()
		if err != nil {
			return err
		}
	}
	return ctx.Err()
}

// wait dispatches notifications and probes delivery until wctx is
// interrupted (a new channel to LISTEN on, a new name to watch) or watches
// are due to change (nil), or the connection fails (its error).
func (l *Listener) wait(ctx, wctx context.Context, conn *pgx.Conn, p *prober) error {
	for {
		l.mu.Lock()
		_, _, next := l.watchWork(time.Now())
		l.mu.Unlock()
		due := p.due()
		if !next.IsZero() && next.Before(due) {
			due = next
		}
		n, err := waitUntil(wctx, conn, due)
		switch {
		case err == nil && n.Channel == l.probe:
			if p.arrived(n.Payload) {
				l.healthy()
			}
		case err == nil:
			l.dispatch(n.Channel, n.Payload)
		case wctx.Err() != nil:
			if ctx.Err() == nil {
				return nil // interrupted: LISTEN or watch anew
			}
			return err
		case errors.Is(err, context.DeadlineExceeded):
			if err := p.tick(ctx, conn, l.probe); err != nil {
				return err
			}
			l.mu.Lock()
			lock, unlock, _ := l.watchWork(time.Now())
			l.mu.Unlock()
			if len(lock)+len(unlock) > 0 {
				return nil
			}
		default:
			return err
		}
	}
}

// waitUntil waits for a notification on conn until deadline.
func waitUntil(ctx context.Context, conn *pgx.Conn, deadline time.Time) (*pgconn.Notification, error) {
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	return conn.WaitForNotification(dctx)
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
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize(), simple); err != nil {
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

// report records why notifications are not delivered, logging it when it
// is news.
func (l *Listener) report(err error) {
	l.mu.Lock()
	news := l.problem == nil || l.problem.Error() != err.Error()
	l.problem = err
	l.mu.Unlock()
	if news && l.cfg.logger != nil {
		l.cfg.logger.LogAttrs(context.Background(), slog.LevelWarn,
			"pgnotify: not receiving notifications; waiters fall back to backoff", slog.String("error", err.Error()))
	}
}

// healthy records that the listener's own notice came back.
func (l *Listener) healthy() {
	l.mu.Lock()
	was := l.problem
	l.problem = nil
	l.mu.Unlock()
	if was != nil && l.cfg.logger != nil {
		l.cfg.logger.LogAttrs(context.Background(), slog.LevelInfo, "pgnotify: receiving notifications again")
	}
}

// Err returns why the listener is not receiving notifications now (it
// cannot connect, its own probe did not come back and it is reconnecting,
// or it is closed), or nil while notifications arrive. A Manager with a
// logger logs it when a waiter starts waiting. Errors of delivery (not of
// connection) match ErrNotDelivered.
func (l *Listener) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.problem
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
