package pgnotify

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gormlock/lockmgr"
)

// Watching: while a process waits for a name, its listener holds the
// shared advisory lock (hashtext(channel), hashtext(name)) in its session,
// and lockmgr's releases NOTIFY only names whose lock they cannot take
// exclusively (lockmgr.Watcher). A lock outlives its last watcher by
// watchLinger, so that a worker waiting for the same name again and again
// does not lock and unlock it each time.
const (
	watchLinger = time.Second
	// MaxWatched bounds the names one Listener holds advisory locks for:
	// they share PostgreSQL's lock table (max_locks_per_transaction ×
	// max_connections entries, 6 400 by default) with every other session.
	// Waiters for names beyond it are not announced to releasers, and take
	// the lock on their backoff schedule. Locks kept after their last waiter
	// left are let go first when new names need room.
	MaxWatched = 64
	// watchRetry is how long a name whose lock a releaser held at that
	// instant waits before the listener tries again.
	watchRetry = 5 * time.Millisecond
	// watchRefusedRetry is how long names wait after the server refused
	// to lock them (an error, not a lock held by a release).
	watchRefusedRetry = 10 * time.Second
)

type watchKey struct{ channel, name string }

type watchState struct {
	refs  int       // Watch calls not yet stopped
	held  bool      // the shared lock is held on the current connection
	idle  time.Time // when refs fell to 0 (held only)
	retry time.Time // when to try again after a failed try-lock
}

// Watch announces that this process waits for name on channel, until stop
// is called: the listener's session holds the shared advisory lock
// (hashtext(channel), hashtext(name)), and releases by lockmgr Managers with
// a Listener NOTIFY the name only while some process holds it. It never
// blocks; the lock is taken by the listener's goroutine a moment later.
// It implements lockmgr.Watcher.
func (l *Listener) Watch(channel, name string) (stop func()) {
	k := watchKey{channel, name}
	l.mu.Lock()
	st := l.watches[k]
	if st == nil {
		st = &watchState{}
		l.watches[k] = st
	}
	st.refs++
	st.idle = time.Time{}
	if !st.held && l.interrupt != nil {
		l.interrupt() // the loop takes the lock, then waits again
	}
	l.mu.Unlock()
	var once bool
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if once {
			return
		}
		once = true
		if st.refs--; st.refs > 0 {
			return
		}
		if st.held {
			st.idle = time.Now() // let go after watchLinger
			if l.interrupt != nil {
				l.interrupt() // the loop's next deadline is now sooner
			}
		} else if l.watches[k] == st {
			delete(l.watches, k)
		}
	}
}

// watchWork returns what syncWatches has to do now, and when it next will
// have something to do (the zero time for never); l.mu is held.
func (l *Listener) watchWork(now time.Time) (lock, unlock []watchKey, next time.Time) {
	held := 0
	for _, st := range l.watches {
		if st.held {
			held++
		}
	}
	later := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	full := false // a wanted name found no room
	var lingering []watchKey
	for k, st := range l.watches {
		switch {
		case st.held && st.refs == 0:
			if at := st.idle.Add(watchLinger); !at.After(now) {
				unlock = append(unlock, k)
			} else {
				lingering = append(lingering, k)
				later(at)
			}
		case !st.held && st.refs > 0 && st.retry.After(now):
			later(st.retry)
		case !st.held && st.refs > 0 && held+len(lock) < MaxWatched:
			lock = append(lock, k)
		case !st.held && st.refs > 0:
			full = true
		}
	}
	if full {
		unlock = append(unlock, lingering...) // make room now
	}
	return lock, unlock, next
}

// syncWatches takes the shared locks of new watches and lets go of those
// whose watchers left more than watchLinger ago, one statement per channel
// and kind.
func (l *Listener) syncWatches(ctx context.Context, conn *pgx.Conn) error {
	l.mu.Lock()
	lock, unlock, _ := l.watchWork(time.Now())
	l.mu.Unlock()
	for ch, names := range byChannel(unlock) {
		if _, err := conn.Exec(ctx, "SELECT pg_advisory_unlock_shared(hashtext($1), hashtext(n)) FROM unnest($2::text[]) AS n",
			simple, ch, names); err != nil {
			return err
		}
		l.mu.Lock()
		for _, name := range names {
			k := watchKey{ch, name}
			if st := l.watches[k]; st != nil {
				if st.held = false; st.refs == 0 {
					delete(l.watches, k)
				}
			}
		}
		l.mu.Unlock()
	}
	for ch, names := range byChannel(lock) {
		rows, err := conn.Query(ctx, "SELECT n, pg_try_advisory_lock_shared(hashtext($1), hashtext(n)) FROM unnest($2::text[]) AS n",
			simple, ch, names)
		if err == nil {
			err = rows.Err() // an error the server sent at once
		}
		if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) {
			// The server refused (its lock table full, say) and the
			// connection is fine: these names wait on backoff for a while.
			l.refused(ch, names, err)
			continue
		}
		if err != nil {
			return err
		}
		got := map[string]bool{}
		for rows.Next() {
			var name string
			var ok bool
			if err := rows.Scan(&name, &ok); err != nil {
				rows.Close()
				return err
			}
			got[name] = ok
		}
		if err := rows.Err(); err != nil {
			if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) {
				l.refused(ch, names, err)
				continue
			}
			return err
		}
		now := time.Now()
		l.mu.Lock()
		for name, ok := range got {
			k := watchKey{ch, name}
			st := l.watches[k]
			switch {
			case st == nil && !ok:
				continue // its watcher left meanwhile, and nothing is held
			case st == nil: // its watcher left meanwhile: let go of it later
				st = &watchState{idle: now}
				l.watches[k] = st
			}
			switch st.held = ok; {
			case !ok && st.refs == 0:
				delete(l.watches, k)
			case !ok:
				st.retry = now.Add(watchRetry) // a release holds it this instant
			case st.refs == 0 && st.idle.IsZero():
				st.idle = now
			}
		}
		l.mu.Unlock()
	}
	return nil
}

// refused puts off watching names the server would not lock for, and
// logs why.
func (l *Listener) refused(channel string, names []string, err error) {
	l.mu.Lock()
	retry := time.Now().Add(watchRefusedRetry)
	for _, name := range names {
		if st := l.watches[watchKey{channel, name}]; st != nil && !st.held {
			st.retry = retry
		}
	}
	l.mu.Unlock()
	if l.cfg.logger != nil {
		l.cfg.logger.LogAttrs(context.Background(), slog.LevelWarn,
			"pgnotify: cannot watch names; their waiters rely on backoff", slog.String("error", err.Error()))
	}
}

func byChannel(keys []watchKey) map[string][]string {
	m := map[string][]string{}
	for _, k := range keys {
		m[k.channel] = append(m[k.channel], k.name)
	}
	return m
}

// dropWatches forgets the locks of a connection that is gone (its session
// let go of them), keeping the watches still wanted.
func (l *Listener) dropWatches() {
	for k, st := range l.watches {
		if st.held = false; st.refs == 0 {
			delete(l.watches, k)
		}
	}
}

var _ lockmgr.Watcher = (*Listener)(nil)
