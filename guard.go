package lockmgr

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
)

// Guarded writes: a lock that protects the data written under it, when the
// data lives in the lock's own database. A guard is one write on the lock
// row, inside the caller's transaction, owner-checked and live by the
// database's clock (Statements.Guard in internal/engine):
//
//   - it holds the row until the transaction ends, so no takeover,
//     Unlock, CleanLocks or Reset commits before the caller's writes do,
//     and a takeover that committed first is seen (the statement reads the
//     row as the takeover left it) and answered with ErrNotHeld;
//   - it is a write, not a shared read lock (clause.Locking), because a
//     write is what every engine orders: Galera certifies write sets only
//     (a SELECT … FOR UPDATE on one node does not stop a takeover on
//     another, certification of the two writes does), TiDB's optimistic
//     transactions check writes at commit, and on SQLite the write takes
//     the database's write lock at once, so GORM's deferred transaction
//     never meets "database is locked" on its first own write;
//   - it changes updated_at only: a guard checks, it does not renew (a
//     Scope's keep-alive and Renew do). The write always changes the row,
//     since MySQL counts, and Galera certifies, changed rows only.
//
// The cost is one statement per transaction, and two guarded transactions
// of one lock (a scope's parallel workers) run one after the other.

// Guard checks, inside the caller's transaction tx (db.Begin(), or the tx
// of db.Transaction), that l is still held — its token holds the name and
// it has not expired by the database's clock — and holds the lock row
// until tx commits or rolls back, so that no one takes the lock over, and
// no Unlock, CleanLocks or Reset ends it, before tx ends: a holder that
// paused past its expiry gets ErrNotHeld, and its transaction, rolled
// back, writes nothing. Call it before the writes it protects. On Galera,
// whose row locks stay on their node, a takeover on another node instead
// makes certification fail tx's commit: either way, no write of tx
// commits after a takeover.
//
// A lock no longer held returns an error matching ErrNotHeld that says
// what is known: expired, taken over by whom, or gone (released, unlocked,
// cleaned, reset). A nil lock, a nil or non-transaction tx, or a nil ctx
// return ErrInvalidOption before any SQL; a Lock with an empty token is
// held by nobody (ErrNotHeld). Any other error is the database's.
//
// Guard does not renew l. A scope's lock is best guarded with
// Scope.Transaction, which keeps the scope's keep-alive out of the row's
// way while tx holds it; Guard on a scope's lock from another transaction
// makes the keep-alive wait behind tx. Guard only protects writes to the
// lock's own database: data anywhere else still needs the lock's Fence.
func (m *Manager) Guard(ctx context.Context, tx *gorm.DB, l *Lock) (err error) {
	if err := checkContext(ctx); err != nil {
		return err
	}
	if err := validateLock(l); err != nil {
		return err
	}
	if err := checkDB(tx); err != nil {
		return fmt.Errorf("Guard: %w", err)
	}
	txm := m.WithTx(tx)
	if txm.err != nil {
		return fmt.Errorf("lockmgr: guard %q: %w (Guard runs inside the caller's transaction)", l.Name, txm.err)
	}
	ctx, end := m.begin(ctx, "guard", l.Name)
	defer func() { end(l, err) }()
	if l.Token == "" {
		return fmt.Errorf("%w: lock %q has no token", ErrNotHeld, l.Name)
	}
	var v values
	m.d.fill(&v, 0)
	v[aName], v[aToken] = l.Name, l.Token
	n, err := txm.exec(ctx, m.d.guard, &v)
	switch {
	case err != nil:
		return fmt.Errorf("lockmgr: guard %q: %w", l.Name, err)
	case n != 1:
		return txm.whyNotHeld(ctx, l, &v)
	}
	return nil
}

// whyNotHeld reads, after a guard found l not held, what became of it.
// Reading is off the hot path: the caller's transaction rolls back anyway.
func (m *Manager) whyNotHeld(ctx context.Context, l *Lock, v *values) error {
	var token, by string
	var live int64
	found, err := m.query(ctx, m.d.guardMiss, v, &token, &by, &live)
	switch {
	case err != nil:
		return fmt.Errorf("%w: %q (reading its row: %v)", ErrNotHeld, l.Name, err)
	case !found:
		return fmt.Errorf("%w: %q is gone (released, unlocked, cleaned or reset)", ErrNotHeld, l.Name)
	case token == l.Token:
		return fmt.Errorf("%w: %q expired", ErrNotHeld, l.Name)
	case live == 1:
		return fmt.Errorf("%w: %q was taken over by %q", ErrNotHeld, l.Name, by)
	}
	return fmt.Errorf("%w: %q was taken over by %q (whose lock has expired too)", ErrNotHeld, l.Name, by)
}

// Transaction runs fn in a GORM transaction on the scope's database (the
// *gorm.DB given to New, with ctx), guarded by the scope's main lock:
// Guard runs first, and fn only if the lock is still held. fn's error, or
// a panic, rolls the transaction back; Transaction returns fn's error, or
// the guard's (ErrNotHeld: the lock is lost, the scope's Context is
// cancelled with ErrLockLost, and fn does not run), or the commit's.
//
// While the transaction is open its row lock keeps the lock the scope's:
// the keep-alive leaves the main lock alone, so a transaction that runs
// longer than the lock's expiry costs the scope nothing, and the renewal
// that fell due meanwhile runs inside the transaction, just before it
// commits. Contenders meanwhile get ErrLocked (Wait keeps waiting); on a
// Galera cluster, which does not replicate row locks, a contender on
// another node can take the lock over once it has expired, and
// certification then fails this transaction's commit. A transaction that
// rolls back after such a renewal was due renews the lock at once, from
// outside. Transactions of one scope may run concurrently;
// they take the lock row one after the other. It returns ErrScopeClosed
// after Close, and ErrNotHeld if the main lock was unlocked or lost.
func (s *Scope) Transaction(ctx context.Context, fn func(tx *gorm.DB) error) (err error) {
	if err := checkContext(ctx); err != nil {
		return err
	}
	if fn == nil {
		return fmt.Errorf("%w: Scope.Transaction: nil function", ErrInvalidOption)
	}
	h, l, err := s.guardMain()
	if err != nil {
		return err
	}
	var g guardRun
	defer func() { s.unguard(ctx, h, l, &g, err) }() // after a panic in fn, too
	return s.m.given.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		return s.guarded(ctx, tx, h, l, fn, &g)
	})
}

// guardRun is what one guarded transaction did.
type guardRun struct {
	guarded bool      // the guard passed
	notHeld error     // the guard's ErrNotHeld
	renewed *Lock     // the lock as renewed inside the transaction
	sent    time.Time // when that renewal was sent
}

// guardMain marks the scope's main lock guarded and returns it.
func (s *Scope) guardMain() (*held, *Lock, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, nil, ErrScopeClosed
	}
	h := s.held[s.main.Name]
	if h == nil || s.main.Token == "" {
		return nil, nil, fmt.Errorf("%w: %q (the scope's main lock was unlocked or lost)", ErrNotHeld, s.main.Name)
	}
	h.guards++
	s.resetSafe()
	return h, h.lock, nil
}

// guarded is Scope.Transaction's transaction: the guard, fn, and the
// keep-alive's renewal if it fell due meanwhile.
func (s *Scope) guarded(ctx context.Context, tx *gorm.DB, h *held, l *Lock, fn func(*gorm.DB) error, g *guardRun) error {
	if err := s.m.Guard(ctx, tx, l); err != nil {
		if errors.Is(err, ErrNotHeld) {
			g.notHeld = err
		}
		return err
	}
	g.guarded = true
	if err := fn(tx); err != nil {
		return err
	}
	s.mu.Lock()
	due := h.every > 0 && !time.Now().Before(h.next)
	s.mu.Unlock()
	if !due {
		return nil
	}
	g.sent = time.Now()
	nl, err := s.m.WithTx(tx).renewToken(ctx, l, &lockConfig{expires: h.expires})
	if err != nil {
		return err
	}
	g.renewed = nl
	return nil
}

// unguard hands the main lock back to the keep-alive, recording what the
// transaction g learnt of it; err is the transaction's.
func (s *Scope) unguard(ctx context.Context, h *held, l *Lock, g *guardRun, err error) {
	s.mu.Lock()
	due := h.every > 0 && !time.Now().Before(h.next)
	s.mu.Unlock()
	defer func() { // after the renewal: the deadline counts again
		s.mu.Lock()
		h.guards--
		s.resetSafe()
		s.mu.Unlock()
		s.poke()
	}()
	switch {
	case g.notHeld != nil:
		s.lose(l.Name, l, g.notHeld)
	case err == nil && g.renewed != nil:
		s.keptAlive(l, g.renewed, g.sent, h)
	case g.guarded && due: // rolled back, renewal and all
		rctx, cancel := s.m.detached(ctx)
		defer cancel()
		sent := time.Now()
		nl, rerr := s.m.renewToken(rctx, l, &lockConfig{expires: h.expires})
		switch {
		case rerr == nil:
			s.keptAlive(l, nl, sent, h)
		case errors.Is(rerr, ErrNotHeld):
			s.lose(l.Name, l, rerr)
		default:
			s.m.warn(s.tendCtx, "lockmgr: renewal after a guarded transaction failed", l.Name, rerr)
		}
	}
}

// keptAlive records a keep-alive renewal of l, sent at sent.
func (s *Scope) keptAlive(l, nl *Lock, sent time.Time, h *held) {
	s.renewed(l.Name, l.Token, nl, sent, h.expires, false)
	s.mu.Lock()
	h.next = sent.Add(h.every)
	s.mu.Unlock()
}
