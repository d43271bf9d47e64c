// Package pgnotify wakes lockmgr waiters across processes with PostgreSQL's
// LISTEN/NOTIFY. Give every process's Manager the same Listener option:
//
//	l, err := pgnotify.Listen(ctx, "postgres://…")
//	if err != nil { … }
//	defer l.Close()
//	m, err := lockmgr.New(db, lockmgr.WithNotifier(l))
//
// While a process waits for a name, its Listener holds the shared advisory
// lock (hashtext(channel), hashtext(name)) on its connection (Watch). A
// Manager with a Listener announces a release or unlock in the same
// statement that deletes the row (pg_notify inside the DELETE's round
// trip) when some process holds that lock, and only then: uncontended
// releases send nothing, since PostgreSQL serialises the commits that
// notify. On a notice, the first waiter of the name in each listening
// process tries at once instead of at its next backoff. Notifications are
// a hint, never a guarantee: a waiter that misses one (say, while the
// listener reconnects) still gets the lock on its backoff schedule.
//
// The listener needs a PostgreSQL session of its own: a direct connection
// or one through a session-pooling proxy. Behind a transaction pooler
// (PgBouncer's pool_mode=transaction, RDS Proxy, Supavisor, pgcat) LISTEN
// lands on a server connection other clients share, and notifications never
// arrive. Listen checks that a notification sent through another
// connection arrives, and returns ErrNotDelivered when it does not; while
// it runs, the listener notifies itself now and then and reconnects when
// its own notice does not come back, reporting the problem through Err and
// the logger of WithLogger. Waiters keep their backoff schedule meanwhile.
//
// The package holds the Listener (pgnotify.go), its watches of names
// (watch.go) and its delivery check (probe.go). It imports pgx and not the
// lockmgr package: a Listener is a lockmgr.Notifier and Watcher by its
// methods alone. The lockmgr package never imports it, so a program that
// does not import pgnotify links no pgx.
package pgnotify
