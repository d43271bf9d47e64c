package lockmgr

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"
)

// Notifier carries release notices between processes, so that waiters
// elsewhere wake at once instead of at their next backoff. Package pgnotify
// implements it with PostgreSQL's LISTEN/NOTIFY.
type Notifier interface {
	// Channel is the NOTIFY channel releases of table are announced on.
	Channel(table string) string
	// Subscribe calls fn with the payload of every notice on channel until
	// the returned stop function is called. fn must not block. A Manager's
	// releases send the released name, prefixed with "\x1e", 16 hex digits
	// that identify the sending process's database handle, and "\x1e", so
	// that a process can skip its own releases, whose waiters it has already
	// woken; a payload without the prefix is taken as a bare name.
	Subscribe(channel string, fn func(payload string)) (stop func())
}

// Watcher is a Notifier that tells other processes which names this one
// waits for, so that a release announces itself only when somebody waits
// for its name: NOTIFY serialises the commits that send it, and sending one
// on every release makes every lock call dearer under concurrency.
//
// From Watch until stop is called, the Watcher must hold PostgreSQL's
// shared advisory lock (hashtext(channel), hashtext(name)) in a session
// that stays open; a release NOTIFYs when it cannot take that lock
// exclusively for an instant. Package pgnotify's Listener is a Watcher.
// With a Notifier that is not one, every release NOTIFYs; all the
// processes sharing a table must use Watchers, or none.
type Watcher interface {
	Notifier
	// Watch announces that this process waits for name on channel until
	// stop is called. Calls nest: each stop undoes one Watch. It must not
	// block; the announcement may take effect a moment later.
	Watch(channel, name string) (stop func())
}

// notifierHealth is implemented by a Notifier that can tell it is not
// delivering notices now (pgnotify.Listener's Err).
type notifierHealth interface{ Err() error }

// notifierWarnEvery bounds how often a Manager logs that its notifier is
// not delivering.
const notifierWarnEvery = time.Minute

// notifierWarned is when a Manager last logged that (Unix nanoseconds),
// shared by its copies (WithTx).
type notifierWarned = atomic.Int64

// checkNotifier logs, at most once a minute, that the notifier is not
// delivering: waiters then take the lock on their backoff schedule only.
func (m *Manager) checkNotifier(ctx context.Context) {
	h, ok := m.notifier.(notifierHealth)
	if !ok || m.logger == nil || m.notifyWarned == nil {
		return
	}
	err := h.Err()
	if err == nil {
		return
	}
	now, last := time.Now().UnixNano(), m.notifyWarned.Load()
	if last != 0 && now-last < int64(notifierWarnEvery) || !m.notifyWarned.CompareAndSwap(last, now) {
		return
	}
	m.logger.LogAttrs(ctx, slog.LevelWarn, "lockmgr: notifier is not delivering; waiters rely on backoff",
		slog.String("table", m.tableName), slog.String("error", err.Error()))
}
