// Package gocronlock runs gocron v2 jobs once per tick across a fleet,
// with locks kept by lockmgr in the application's own database
// (PostgreSQL, MySQL/MariaDB incl. Galera and TiDB, SQLite).
//
// Every replica schedules the same jobs; [NewLocker] gives gocron a
// [gocron.Locker] under which, for each tick, exactly one replica runs
// the job:
//
//	locker, err := gocronlock.NewLocker(m, gocronlock.Interval(time.Minute))
//	s, err := gocron.NewScheduler(gocron.WithDistributedLocker(locker))
//
// # How a tick is told apart
//
// gocron hands a Locker only the job's name, not the tick it is for, and
// the replicas' schedulers fire a tick at slightly different moments (their
// clocks differ, a busy one runs late). So the lock is held for at least
// LockAtLeastFor from its acquisition, by the database's clock, even when
// the job finishes sooner (lockmgr.HoldAtLeast; ShedLock's lockAtLeastFor):
// a replica whose scheduler fires the same tick later finds it held and
// skips it. And it expires LockAtMostFor after its acquisition, however
// long the job runs and whether or not its runner is still alive
// (ShedLock's lockAtMostFor): a runner that crashed holds the job back
// until then only, so the next tick runs on time. With Interval(d) the
// defaults are LockAtLeastFor = d/2 and LockAtMostFor = 3d/4: replicas
// may fire a tick up to d/2 apart, and a job must finish within 3d/4 (a
// job that runs longer can run twice at once; give it a longer
// LockAtMostFor, and accept that a crashed runner then holds back the
// ticks until it passes).
//
// Contested ticks cost one statement each, and log nothing: the losers'
// acquisition is lockmgr's conditional upsert, which leaves no
// duplicate-key error in the database's log. A lock released before its
// hold has passed keeps its row until then, and the Locker deletes it
// once the hold has passed (owner-checked: a row the next tick took is
// left alone), so a job leaves no row behind between ticks; a process
// that stops meanwhile leaves one expired row, which
// lockmgr.Manager.CleanLocks deletes.
//
// [NewElector] gives gocron a [gocron.Elector] instead: only the leader of
// a lockmgr.Election schedules jobs at all.
package gocronlock
