package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gormlock/lockmgr"
	"github.com/gormlock/lockmgr/pgnotify"
)

// lockmgrLocker is the library under test, called the way its README shows.
type lockmgrLocker struct {
	name  string // lkLockmgr, or lkNotify with the cross-process waker
	t     *target
	m     *lockmgr.Manager
	table string
	waker string // "in-process" or the cross-process notifier in use
	stop  func()
}

// newLockmgrLocker binds a Manager to the target's lockmgr table. migrate
// creates the table (the parent process does; worker processes do not);
// notify adds the cross-process waker (PostgreSQL only).
func newLockmgrLocker(ctx context.Context, t *target, table string, migrate, notify bool) (*lockmgrLocker, error) {
	opts := []lockmgr.Option{lockmgr.WithTable(table)}
	nopts, waker, stop, err := notifyOptions(ctx, t, notify)
	if err != nil {
		return nil, fmt.Errorf("lockmgr notifier: %w", err)
	}
	opts = append(opts, nopts...)
	m, err := lockmgr.New(t.gdb, opts...)
	if err != nil {
		stop()
		return nil, fmt.Errorf("lockmgr.New: %w", err)
	}
	if migrate {
		if err := m.AutoMigrate(ctx); err != nil {
			stop()
			return nil, fmt.Errorf("lockmgr AutoMigrate: %w", err)
		}
	}
	name := lkLockmgr
	if waker != "backoff" {
		name = lkNotify
	}
	return &lockmgrLocker{name: name, t: t, m: m, table: table, waker: waker, stop: stop}, nil
}

// notifyOptions returns the Manager options that wake waiters in OTHER
// processes when a name is released, a label for the results, and how to
// stop it. On PostgreSQL that is package pgnotify's LISTEN/NOTIFY Listener
// (one connection per process); elsewhere, and with notify false,
// cross-process waiters rely on Wait's backoff alone.
func notifyOptions(ctx context.Context, t *target, notify bool) ([]lockmgr.Option, string, func(), error) {
	if t.kind != dbPostgres || !notify {
		return nil, "backoff", func() {}, nil
	}
	l, err := pgnotify.Listen(ctx, t.dsn)
	if err != nil {
		return nil, "", nil, err
	}
	return []lockmgr.Option{lockmgr.WithNotifier(l)}, "pgnotify", func() { _ = l.Close() }, nil
}

func (l *lockmgrLocker) label() string { return l.name }

func (l *lockmgrLocker) session(context.Context) (session, error) { return sharedSession{l}, nil }

func (l *lockmgrLocker) lock(ctx context.Context, name string, ttl, wait time.Duration) (any, error) {
	opts := []lockmgr.LockOption{lockmgr.Expires(ttl)}
	if wait > 0 {
		opts = append(opts, lockmgr.Wait(wait))
	}
	lk, err := l.m.GetLock(ctx, name, opts...)
	if errors.Is(err, lockmgr.ErrLocked) {
		return nil, errHeld
	}
	if err != nil {
		return nil, describe(lkLockmgr, err)
	}
	return lk, nil
}

func (l *lockmgrLocker) unlock(ctx context.Context, held any) error {
	return describe(lkLockmgr, l.m.Release(ctx, held.(*lockmgr.Lock)))
}

func (l *lockmgrLocker) setLock(ctx context.Context, names []string, ttl time.Duration) error {
	_, err := l.m.SetLock(ctx, names, lockmgr.Expires(ttl))
	return describe(lkLockmgr, err)
}

func (l *lockmgrLocker) clear(ctx context.Context) error {
	_, err := l.m.Reset(ctx)
	return describe(lkLockmgr, err)
}

func (l *lockmgrLocker) close() error {
	l.stop()
	return nil
}
