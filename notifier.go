package lockmgr

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"
)

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
