// Package lockmgr gives Go applications built on GORM named, expiring locks
// kept in a table of the database they already use — PostgreSQL,
// MySQL/MariaDB or SQLite — with no lock server to run. It is the Go
// counterpart of Python's django-lockmgr and can share its lockmgr_lock
// table.
//
// A [Manager] takes and releases locks in one table:
//
//	m, err := lockmgr.New(db) // db is your *gorm.DB
//	if err != nil {
//		return err
//	}
//	if err := m.AutoMigrate(ctx); err != nil {
//		return err
//	}
//	l, err := m.GetLock(ctx, "invoice:42", lockmgr.Expires(30*time.Second))
//	if errors.Is(err, lockmgr.ErrLocked) {
//		return nil // someone else has it
//	}
//	if err != nil {
//		return err
//	}
//	defer m.Release(ctx, l)
//
// Or register the [Plugin] once with db.Use(lockmgr.NewPlugin()) and get the
// Manager anywhere with [FromDB].
//
// # Locks
//
// A lock is a row: a name (1 to 255 bytes, compared byte for byte), who
// holds it (LockedBy, the host name by default), the holder's process id,
// and when it expires (LockedUntil; nil means never). An expired lock
// counts as free: [Manager.IsLocked] reports false and [Manager.GetLock]
// takes it over. Expiry
// is judged by the database's clock on PostgreSQL and MySQL/MariaDB, so
// hosts whose clocks disagree still agree on who holds a lock; SQLite has
// no server, and there the process's clock decides.
//
// Taking a lock is one statement — a conditional upsert — so of any number
// of callers racing for a free name exactly one gets it and the others get
// [ErrLocked], never a driver error. Releasing, renewing and checking are one
// statement each as well.
//
// # Ownership, tokens and fences
//
// Every acquisition gets a random [Lock.Token]. [Manager.Release] and
// [Manager.Renew] act only while that token still holds the name, and return
// [ErrNotHeld] otherwise, so a
// holder whose lock expired and was taken over cannot release or extend
// the new holder's lock. Unlock, RenewLock, SetLock and Reset act on a name
// whoever holds it, as django-lockmgr's functions do; they are for
// operators and for code that owns a name outright.
//
// Every acquisition also gets a [Lock.Fence], a number that grows with each
// acquisition of the name. A lock can be lost without its holder noticing
// in time (a long garbage-collection pause, a network partition); passing
// the fence to the storage the lock protects, which refuses writes carrying
// a fence older than the newest it has seen, closes that gap.
//
// # Scopes and keep-alive
//
// [Manager.Do] runs a function while holding a lock, and [Manager.Acquire]
// returns a [Scope] to Close later. A scope renews its lock in the background every third of its
// expiry, so work may take longer than the expiry as long as the process
// lives; a crashed process's lock frees itself when the expiry passes. If
// renewal finds the lock gone or cannot succeed in time, [Scope.Context] is
// cancelled with cause [ErrLockLost]. A scope may take further
// locks ([Scope.Lock], [Scope.TryLock]) and releases all of them when it ends,
// however it ends.
//
// # Waiting
//
// With [Wait](d), an acquisition retries for up to d with jittered
// exponential backoff, and wakes at once when a lock is released in the
// same process. Package [github.com/gormlock/lockmgr/pgnotify] wakes waiters in other processes too,
// through PostgreSQL's LISTEN/NOTIFY.
//
// # Many locks, and transactions
//
// [Manager.SetLock] locks or extends many names in one transaction; with
// [Fail] it changes nothing if any name is held and returns a [*LockFail]
// naming the holder. [Manager.WithTx] returns a Manager whose calls run inside the caller's GORM
// transaction, so locks commit or roll back with the caller's own writes.
//
// # Observing
//
// [WithLogger] logs lock events to a [log/slog] Logger; [WithHooks] calls
// functions after acquisitions, releases, renewals, contention and lost
// locks, for metrics. The lockmgr command (cmd/lockmgr) lists, sets, clears
// and resets locks from a shell, and runs commands under a lock.
package lockmgr
