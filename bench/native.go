package main

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"hash/fnv"
	"time"
)

// nativeLocker uses the database's own session locks: PostgreSQL advisory
// locks and MariaDB GET_LOCK. They live as long as the session, have no
// expiry and keep no row: the fastest a database can lock. Each goroutine
// pins one connection, as such locks require.
type nativeLocker struct {
	t *target
}

func newNativeLocker(t *target) (*nativeLocker, error) {
	if t.kind != dbPostgres && t.kind != dbMySQL {
		return nil, fmt.Errorf("%s has no named session locks", dbTitle[t.kind])
	}
	return &nativeLocker{t: t}, nil
}

func (n *nativeLocker) label() string { return lkNative }

func (n *nativeLocker) close() error { return nil }

// nativeSQL: try once, wait (blocking, with a timeout on MariaDB), release.
func (n *nativeLocker) statements() (try, wait, release string) {
	if n.t.kind == dbPostgres {
		return "SELECT pg_try_advisory_lock($1)", "SELECT pg_advisory_lock($1)", "SELECT pg_advisory_unlock($1)"
	}
	return "SELECT GET_LOCK(?, 0)", "SELECT GET_LOCK(?, ?)", "SELECT RELEASE_LOCK(?)"
}

func (n *nativeLocker) session(ctx context.Context) (session, error) {
	conn, err := n.t.sqlDB.Conn(ctx)
	if err != nil {
		return nil, describe(lkNative, err)
	}
	s := &nativeSession{t: n.t, conn: conn}
	try, wait, release := n.statements()
	for _, p := range []struct {
		dst **sql.Stmt
		q   string
	}{{&s.try, try}, {&s.wait, wait}, {&s.release, release}} {
		if *p.dst, err = conn.PrepareContext(ctx, p.q); err != nil {
			_ = s.close()
			return nil, describe(lkNative, err)
		}
	}
	return s, nil
}

type nativeSession struct {
	t                  *target
	conn               *sql.Conn
	try, wait, release *sql.Stmt
}

// key is what the database locks for name: a 64-bit hash on PostgreSQL
// (salted with the run, so other people's advisory locks never collide), the
// salted name on MariaDB (at most 64 characters).
func (s *nativeSession) key(name string) any {
	if s.t.kind == dbPostgres {
		h := fnv.New64a()
		_, _ = h.Write([]byte(s.t.salt))
		_, _ = h.Write([]byte(name))
		return int64(h.Sum64())
	}
	k := s.t.salt + ":" + name
	if len(k) > 64 {
		k = k[:64]
	}
	return k
}

func (s *nativeSession) lock(ctx context.Context, name string, _ time.Duration, wait time.Duration) (any, error) {
	key := s.key(name)
	var ok sql.NullBool
	var err error
	switch {
	case wait <= 0:
		err = s.try.QueryRowContext(ctx, key).Scan(&ok)
	case s.t.kind == dbPostgres:
		wctx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		var v sql.NullString // pg_advisory_lock returns void
		err = s.wait.QueryRowContext(wctx, key).Scan(&v)
		ok.Bool, ok.Valid = err == nil, true
		if wctx.Err() != nil {
			return nil, errors.Join(errHeld, wctx.Err())
		}
	default:
		err = s.wait.QueryRowContext(ctx, key, wait.Seconds()).Scan(&ok)
	}
	if err != nil {
		return nil, describe(lkNative, err)
	}
	if !ok.Valid || !ok.Bool {
		return nil, errHeld
	}
	return key, nil
}

func (s *nativeSession) unlock(ctx context.Context, held any) error {
	var ok sql.NullBool
	if err := s.release.QueryRowContext(ctx, held).Scan(&ok); err != nil {
		return describe(lkNative, err)
	}
	if !ok.Bool {
		return fmt.Errorf("native: release of %v: not held", held)
	}
	return nil
}

func (s *nativeSession) close() error {
	var errs []error
	for _, st := range []*sql.Stmt{s.try, s.wait, s.release} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	// A cancelled blocking wait may leave a lock behind on this session:
	// release everything before the connection goes back to the pool.
	q := "SELECT RELEASE_ALL_LOCKS()"
	if s.t.kind == dbPostgres {
		q = "SELECT pg_advisory_unlock_all()"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.conn.ExecContext(ctx, q); err != nil {
		// The session is unusable (a cancelled query): drop it.
		_ = s.conn.Raw(func(any) error { return driver.ErrBadConn })
	}
	errs = append(errs, s.conn.Close())
	return errors.Join(errs...)
}
