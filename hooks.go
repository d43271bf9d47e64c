package lockmgr

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"sync"
	"time"

	"gorm.io/gorm"
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
}

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

var hostname = sync.OnceValue(func() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "unknown"
	}
	if len(h) > MaxNameLen {
		h = h[:MaxNameLen]
	}
	return h
})

var processID = int64(os.Getpid())

// newToken returns 32 hex digits of crypto randomness.
func newToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// BeforeSave is a GORM hook: a Lock saved through GORM directly (db.Save,
// db.Create) must have a valid name.
func (l *Lock) BeforeSave(*gorm.DB) error {
	if err := ValidateName(l.Name); err != nil {
		return err
	}
	return validateLockedBy(l.LockedBy)
}

// BeforeCreate is a GORM hook giving a Lock created directly with
// db.Create the defaults a Manager would: LockedBy (hostname), LockProcess
// (pid), Token and Fence; LockedUntil is stored in UTC, as the lock
// functions compare it.
func (l *Lock) BeforeCreate(*gorm.DB) error {
	if l.LockedBy == "" {
		l.LockedBy = hostname()
	}
	if l.LockProcess == nil {
		pid := processID
		l.LockProcess = &pid
	}
	if l.Token == "" {
		l.Token = newToken()
	}
	if l.Fence == 0 {
		l.Fence = time.Now().UnixMicro()
	}
	if l.LockedUntil != nil {
		u := l.LockedUntil.UTC()
		l.LockedUntil = &u
	}
	return nil
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
