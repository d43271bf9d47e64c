package lockmgr

import (
	"context"
	"log/slog"
	"time"
)

// Hooks are called after lock events, for metrics and tracing. Each gets the
// lock (for OnContended, the lock that was wanted: only Name is certain)
// and how long the call took. Hooks run on the caller's goroutine (OnLost
// and keep-alive OnRenew on the scope's) and must not block; a nil hook is
// skipped.
type Hooks struct {
	// OnAcquire follows every successful acquisition.
	OnAcquire func(l *Lock, d time.Duration)
	// OnRelease follows every release or unlock that removed a lock.
	OnRelease func(l *Lock, d time.Duration)
	// OnRenew follows every successful renewal, keep-alive ones included.
	OnRenew func(l *Lock, d time.Duration)
	// OnContended follows every attempt that found the name held; d is how
	// long the call had been trying.
	OnContended func(l *Lock, d time.Duration)
	// OnLost follows a scope's discovery that its main lock is lost; d is
	// how long the scope had held it.
	OnLost func(l *Lock, d time.Duration)
	// OnStart, for tracing, is called as each lock operation of m begins,
	// on the caller's goroutine with the caller's context: op is "acquire"
	// (GetLock, Do, Acquire, Scope.Lock and TryLock, waiting included),
	// "release", "unlock", "renew", "renew_lock", "keep_alive" (a
	// scope's own renewal, on its context), "guard" (Guard, and the
	// guard that Scope.Transaction runs, on the caller's transaction) or
	// "term" (an Election's term, from its win until its release, on
	// Run's context; lead's context is the scope's own, not the one
	// OnStart returns). It returns the context the
	// operation runs on (ctx, or one derived from it: a span's) and a
	// function, called once when the operation ends, with the lock it
	// ended with (nil when it has none) and its error; either may be nil.
	// m tells the table (Table) and the database (DB).
	OnStart func(ctx context.Context, m *Manager, op, name string) (context.Context, func(l *Lock, err error))
}

// begin starts the operation op on name for Hooks.OnStart; the returned
// end must be called once when the operation ends.
func (m *Manager) begin(ctx context.Context, op, name string) (context.Context, func(*Lock, error)) {
	if m.hooks.OnStart == nil {
		return ctx, func(*Lock, error) {}
	}
	nctx, end := m.hooks.OnStart(ctx, m, op, name)
	if nctx == nil {
		nctx = ctx
	}
	if end == nil {
		end = func(*Lock, error) {}
	}
	return nctx, end
}

// event reports one lock event to the hooks and the logger.
func (m *Manager) event(ctx context.Context, hook func(*Lock, time.Duration), l *Lock, start time.Time, msg string) {
	if hook == nil && m.logger == nil {
		return
	}
	d := time.Since(start)
	if hook != nil {
		hook(l, d)
	}
	if m.logger != nil {
		m.logger.LogAttrs(ctx, slog.LevelDebug, msg, slog.String("name", l.Name),
			slog.Int64("fence", l.Fence), slog.Duration("took", d), slog.String("table", m.tableName))
	}
}

// warn logs a lost lock or a failed release.
func (m *Manager) warn(ctx context.Context, msg, name string, err error) {
	if m.logger != nil {
		m.logger.LogAttrs(ctx, slog.LevelWarn, msg, slog.String("name", name),
			slog.String("table", m.tableName), slog.Any("error", err))
	}
}
