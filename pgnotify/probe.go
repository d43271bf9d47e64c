package pgnotify

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gormlock/lockmgr"
)

// ErrNotDelivered means notifications do not reach the listener's
// connection: it is not a session of its own (a transaction pooler is in
// between) or a notification did not come back in time.
var ErrNotDelivered = errors.New("pgnotify: notifications are not delivered to the listener")

// Delivery probe defaults: the listener notifies itself every
// DefaultProbeEvery and reconnects when the notice has not come back
// within DefaultProbeTimeout; Listen waits DefaultProbeTimeout for its
// first probe.
const (
	DefaultProbeEvery   = 30 * time.Second
	DefaultProbeTimeout = 5 * time.Second
)

// Option configures a Listener.
type Option func(*config) error

type config struct {
	logger         *slog.Logger
	every, timeout time.Duration
}

// WithLogger logs to l when the listener stops receiving notifications
// (at Warn, once per distinct problem) and when it receives them again
// (at Info). Give it the Manager's logger.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return fmt.Errorf("%w: pgnotify.WithLogger(nil)", lockmgr.ErrInvalidOption)
		}
		c.logger = l
		return nil
	}
}

// WithProbe sets how often the listener notifies itself to check that it
// still receives notifications, and how long it waits for that notice
// (and for the first one, in Listen). Both must be positive.
func WithProbe(every, timeout time.Duration) Option {
	return func(c *config) error {
		if every <= 0 || timeout <= 0 {
			return fmt.Errorf("%w: pgnotify.WithProbe(%v, %v): both must be positive", lockmgr.ErrInvalidOption, every, timeout)
		}
		c.every, c.timeout = every, timeout
		return nil
	}
}

func newConfig(opts []Option) (config, error) {
	c := config{every: DefaultProbeEvery, timeout: DefaultProbeTimeout}
	for _, o := range opts {
		if o == nil {
			return c, fmt.Errorf("%w: nil pgnotify.Option", lockmgr.ErrInvalidOption)
		}
		if err := o(&c); err != nil {
			return c, err
		}
	}
	return c, nil
}

// simple runs the listener's statements in pgx's simple protocol: they
// prepare nothing on the server, whatever the connection string's exec mode.
const simple = pgx.QueryExecModeSimpleProtocol

// probeChannel is a channel of the listener's own, never notified by
// anyone else.
func probeChannel() string { return "lockmgr_probe_" + newToken() }

func newToken() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// connect opens the listener's connection and checks that notifications
// sent through another connection reach it. On failure it leaves no LISTEN
// behind that it can reach.
func (l *Listener) connect(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, l.connString)
	if err != nil {
		return nil, fmt.Errorf("pgnotify: connect: %w", err)
	}
	if err := l.check(ctx, conn); err != nil {
		unlisten(conn)
		_ = conn.Close(context.Background())
		return nil, err
	}
	l.healthy()
	return conn, nil
}

// check proves that conn is a session of its own that notifications from
// other sessions reach: first, without LISTEN, that a second connection
// gets another server session (a transaction pooler hands an idle one to
// the next client); then that a notification the second one sends on the
// probe channel arrives within the probe timeout.
func (l *Listener) check(ctx context.Context, conn *pgx.Conn) error {
	other, err := pgx.Connect(ctx, l.connString)
	if err != nil {
		return fmt.Errorf("pgnotify: connect: %w", err)
	}
	defer other.Close(context.Background())
	if !skipSessionCheck {
		if err := distinctSessions(ctx, conn, other); err != nil {
			return err
		}
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{l.probe}.Sanitize(), simple); err != nil {
		return fmt.Errorf("pgnotify: listen: %w", err)
	}
	token := newToken()
	if _, err := other.Exec(ctx, "SELECT pg_notify($1, $2)", simple, l.probe, token); err != nil {
		return fmt.Errorf("pgnotify: notify: %w", err)
	}
	deadline := time.Now().Add(l.cfg.timeout)
	for {
		n, err := waitUntil(ctx, conn, deadline)
		switch {
		case err == nil && n.Channel == l.probe && n.Payload == token:
			return nil
		case err == nil:
			continue
		case ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded):
			return fmt.Errorf("%w: a notification sent through another connection did not arrive within %v "+
				"(a transaction pooler, or a proxy that drops notifications?); use a direct or session-pooled connection string",
				ErrNotDelivered, l.cfg.timeout)
		default:
			return fmt.Errorf("pgnotify: wait: %w", err)
		}
	}
}

// skipSessionCheck lets tests reach the notification probe through a
// transaction pooler.
var skipSessionCheck bool

// distinctSessions fails when a and b run on one server session: a
// transaction pooler between them, which would leave a LISTEN on a server
// connection other clients share.
func distinctSessions(ctx context.Context, a, b *pgx.Conn) error {
	var pa, pb int32
	if err := a.QueryRow(ctx, "SELECT pg_backend_pid()", simple).Scan(&pa); err != nil {
		return fmt.Errorf("pgnotify: %w", err)
	}
	if err := b.QueryRow(ctx, "SELECT pg_backend_pid()", simple).Scan(&pb); err != nil {
		return fmt.Errorf("pgnotify: %w", err)
	}
	if pa == pb {
		return fmt.Errorf("%w: two connections were served by one server session (backend %d): a transaction pooler "+
			"(such as PgBouncer with pool_mode=transaction) is in between; use a direct or session-pooled connection string",
			ErrNotDelivered, pa)
	}
	return nil
}

// unlisten undoes every LISTEN of conn's session, best effort: behind a
// transaction pooler it may reach another server connection.
func unlisten(conn *pgx.Conn) {
	if conn.IsClosed() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, _ = conn.Exec(ctx, "UNLISTEN *", simple)
}

// prober sends the running listener's own probes and notices when one
// does not come back.
type prober struct {
	cfg      config
	next     time.Time // when the next probe goes out
	token    string    // the probe awaited; "" when none is
	deadline time.Time // when the awaited probe is late
}

func newProber(cfg config) *prober {
	return &prober{cfg: cfg, next: time.Now().Add(cfg.every)}
}

// due is when tick has something to do.
func (p *prober) due() time.Time {
	if p.token != "" {
		return p.deadline
	}
	return p.next
}

// arrived reports whether payload is the awaited probe, which it settles.
func (p *prober) arrived(payload string) bool {
	if p.token == "" || payload != p.token {
		return false
	}
	p.token, p.next = "", time.Now().Add(p.cfg.every)
	return true
}

// tick sends a probe when one is due, and fails when the awaited one is late.
func (p *prober) tick(ctx context.Context, conn *pgx.Conn, channel string) error {
	now := time.Now()
	if p.token != "" {
		if now.Before(p.deadline) {
			return nil
		}
		return fmt.Errorf("%w: the listener's own notification did not come back within %v: its connection stopped listening",
			ErrNotDelivered, p.cfg.timeout)
	}
	if now.Before(p.next) {
		return nil
	}
	p.token, p.deadline = newToken(), now.Add(p.cfg.timeout)
	if _, err := conn.Exec(ctx, "SELECT pg_notify($1, $2)", simple, channel, p.token); err != nil {
		return fmt.Errorf("pgnotify: probe: %w", err)
	}
	return nil
}
