// Package lockmgr gives Go applications built on GORM named, expiring locks
// kept in a table of the database they already use — PostgreSQL,
// MySQL/MariaDB or SQLite — with no lock server to run. It is the Go
// counterpart of Python's django-lockmgr and can share its lockmgr_lock
// table.
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
// # Setup
//
// [New] binds a [Manager] to a *gorm.DB and a table ([DefaultTable] unless
// [WithTable] names another). The table is created by any of
// [Manager.AutoMigrate], the GORM plugin ([NewPlugin], registered with
// db.Use, after which [FromDB] returns its Manager anywhere the *gorm.DB is
// at hand), GORM's own db.AutoMigrate(&lockmgr.Lock{}), or the CLI's
// "lockmgr migrate". Manager options: [WithTable], [WithOwner] (the
// LockedBy every lock records; the host name by default), [WithLogger],
// [WithHooks], [WithNotifier].
//
// # Locks
//
// A lock is a row, a [Lock]: a name (1 to [MaxNameLen] bytes, compared byte
// for byte; [ValidateName] checks one), who holds it (LockedBy), the
// holder's process id, and when it expires (LockedUntil; nil means never).
// An expired lock counts as free. Expiry is judged by the database's clock
// on PostgreSQL and MySQL/MariaDB, so hosts whose clocks disagree still
// agree on who holds a lock; SQLite has no server, and there the process's
// clock decides.
//
//   - [Manager.GetLock] takes a lock in one statement: of any number of
//     callers racing for a free name exactly one gets it and the others get
//     [ErrLocked], never a driver error.
//   - [Manager.Release] and [Manager.Renew] act only while the lock's
//     [Lock.Token] still holds the name, and return [ErrNotHeld] otherwise,
//     so a holder whose lock expired and was taken over cannot release or
//     extend the new holder's lock.
//   - [Manager.Unlock], [Manager.RenewLock], [Manager.SetLock] and
//     [Manager.Reset] act on names whoever holds them, as django-lockmgr's
//     functions do; they are for operators and for code that owns a name
//     outright.
//   - [Manager.IsLocked], [Manager.Get] and [Manager.List] read live locks;
//     [Manager.CleanLocks] deletes expired rows.
//
// Every acquisition also gets a [Lock.Fence], a number that grows with each
// acquisition of the name. A lock can be lost without its holder noticing
// in time (a long pause, a network partition); passing the fence to the
// storage the lock protects, which refuses writes carrying a fence older
// than the newest it has seen, closes that gap.
//
// # Scopes and keep-alive
//
// [Manager.Do] runs a function while holding a lock, and [Manager.Acquire]
// returns a [Scope] to Close later. A scope renews its lock in the
// background every third of its expiry ([KeepAliveEvery], [NoKeepAlive]),
// so work may take longer than the expiry as long as the process lives; a
// crashed process's lock frees itself when the expiry passes. If renewal
// finds the lock gone or cannot succeed in time, [Scope.Context] is
// cancelled with cause [ErrLockLost]. A scope may take further locks
// ([Scope.Lock], [Scope.TryLock], [Scope.Unlock]) and releases all of them
// when it ends, however it ends; [Scope.Renew] renews its main lock as
// django-lockmgr's LockMgr.renew does. The context's Err and Done check
// the lease's safe deadline themselves, so a process resumed from a pause
// past it sees the context done at its first check.
//
// # Leader election
//
// [NewElection] makes a member of an election held on one lock: [Election.Run]
// campaigns and calls a lead function with a [Term] (its fence grows term
// by term) and a context cancelled the moment leadership is in doubt;
// [Election.Leader] and [Election.Observe] tell any process who leads, and
// [Election.Resign] hands over at once (docs/leadership.md).
//
// # Lock options
//
// Calls that take a lock accept [LockOption] values: [Expires] (default
// [DefaultExpires]) or [NoExpiry]; [Wait], which retries with jittered
// backoff, and whose first waiter of a name is woken at once by a release
// in the same process (or, through [github.com/gormlock/lockmgr/pgnotify],
// in any process on PostgreSQL);
// [LockedBy] and [Process] for what the row records; [AddTime] and [Create]
// for renewals; [Fail], [NoRenew] and [NoCreate] for [Manager.SetLock].
//
// # Many names, and transactions
//
// [Manager.SetLock] locks or extends many names in one transaction and
// reports each in a [LockSetResult]; with [Fail] it changes nothing if any
// name is held and returns a [*LockFail] naming the holder.
// [Manager.WithTx] returns a Manager whose calls run inside the caller's
// GORM transaction, so locks commit or roll back with the caller's writes.
//
// # Errors
//
// Errors carry the "lockmgr: " prefix and are checked with [errors.Is] and
// [errors.As]: [ErrLocked] (held by someone else; a [*LockFail] matches it
// too), [ErrNotHeld], [ErrLockNotFound], [ErrLockLost], [ErrScopeClosed],
// [ErrInvalidName] and [ErrInvalidOption] (bad input, reported before any
// SQL runs).
//
// # Observing
//
// [WithLogger] logs lock events to a [log/slog] Logger; [WithHooks] calls
// the functions of a [Hooks] after acquisitions, releases, renewals,
// contention and lost locks, for metrics. Lock statements go to the
// connection pool directly, past GORM's logger and plugins, unless
// [WithGORMCallbacks] asks for GORM's path.
//
// # More
//
// Package [github.com/gormlock/lockmgr/pgnotify] wakes waiters across
// processes through PostgreSQL's LISTEN/NOTIFY. The lockmgr command
// (module github.com/gormlock/lockmgr/cmd/lockmgr) lists, sets, clears and
// resets locks from a shell, creates the table, and runs commands under a
// lock. The guides — setup, concepts, per-database notes, the CLI manual,
// coming from django-lockmgr, design, performance and reliability — are in
// the docs directory of the repository:
// https://github.com/gormlock/lockmgr/tree/main/docs.
package lockmgr
