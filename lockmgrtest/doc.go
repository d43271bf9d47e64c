// Package lockmgrtest helps users of lockmgr test their own code: New gives
// a test a Manager on a temporary SQLite database, and Steal and Expire make
// a lock the code under test holds lost, the two ways a lock is lost in
// production, so that a test can check what the code does then (stop
// writing, report, take the lock again).
//
// A lock is lost when its holder's token no longer holds the name: Steal
// gives the name to another holder; Expire lets its expiry pass by the
// database's clock and removes it, as a cleaner does. The holder finds out
// at its next owner-checked call: Renew and Release return ErrNotHeld, and
// a Scope (Do, Acquire) cancels its context with cause ErrLockLost at its
// next keep-alive renewal, so give the scope under test a short
// lockmgr.KeepAliveEvery.
//
// Steal and Expire work on any Manager, New's or one on PostgreSQL or
// MySQL/MariaDB that a test built itself; they fail the test when the name
// is not held.
package lockmgrtest
