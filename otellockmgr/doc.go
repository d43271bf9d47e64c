// Package otellockmgr records OpenTelemetry traces and metrics of lockmgr's
// lock operations. Option returns a lockmgr.Option that gives every
// acquisition (waiting included), release, unlock, renewal and scope
// keep-alive renewal a span, a child of the caller's span (the one in the
// ctx given to lockmgr), with the lock's name, fence and outcome, and that
// records the acquisition latency, contention, hold time, held and lost
// locks as metrics:
//
//	m, err := lockmgr.New(db, otellockmgr.Option())
//
// Attribute names follow OpenTelemetry's semantic conventions for database
// clients where they apply (db.system.name, db.operation.name,
// db.collection.name: the lock table, error.type); those of the lock itself
// are under lockmgr. (AttrLockName and the others below).
//
// The option installs lockmgr.Hooks: it replaces hooks given by
// lockmgr.WithHooks (and they replace it), so pass your own hooks with
// WithHooks here instead.
package otellockmgr
