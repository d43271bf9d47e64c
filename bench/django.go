package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	mysqldrv "github.com/go-sql-driver/mysql"
)

// djangoLocker re-implements django-lockmgr 2.0's algorithm, statement for
// statement as its ORM issues them, through database/sql with every
// statement prepared once. That flatters django: the Python and ORM cost of
// each statement is left out, only the round trips and locking remain.
//
// get_lock(name):
//
//	clean_locks():  atomic { SELECT COUNT(*) … WHERE locked_until < now;  [DELETE … WHERE locked_until < now] }
//	SELECT COUNT(*) … WHERE name = ?                               → Locked if > 0
//	atomic { SELECT … WHERE name = ? FOR UPDATE                    → Locked if any
//	         INSERT (create)
//	         UPDATE … WHERE name = ? (the extra lock.save()) }
//
// unlock(lock): DELETE … WHERE name = ?. LockMgr(wait=…): retry every 5 s.
// set_lock(names…): atomic { SAVEPOINT; per name get_lock, or on Locked
// SELECT + renew_lock }, each nested atomic being a SAVEPOINT.
type djangoLocker struct {
	t      *target
	db     *sql.DB // t.sqlDB, or on MariaDB a pool in READ COMMITTED as Django ≥ 2.0 sets it
	table  string
	poll   time.Duration
	stmts  djangoStmts
	owner  string
	pid    int64
	forUpd string
}

type djangoStmts struct {
	cleanCount, cleanDelete, count, lockRow, insert, save, del, get, renew *sql.Stmt
}

// djangoDDL is the table Django 3.2 creates for django-lockmgr's model (no
// index on locked_until: the model declares none).
func djangoDDL(t *target, table string) string {
	q := t.quote(table)
	switch t.kind {
	case dbPostgres:
		return `CREATE TABLE ` + q + ` (name varchar(100) NOT NULL PRIMARY KEY, locked_by varchar(100) NULL,
	lock_process integer NULL, locked_until timestamp with time zone NULL,
	created_at timestamp with time zone NOT NULL, updated_at timestamp with time zone NOT NULL)`
	case dbMySQL:
		return `CREATE TABLE ` + q + ` (name varchar(100) NOT NULL PRIMARY KEY, locked_by varchar(100) NULL,
	lock_process integer NULL, locked_until datetime(6) NULL,
	created_at datetime(6) NOT NULL, updated_at datetime(6) NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`
	default:
		return `CREATE TABLE ` + q + ` (name varchar(100) NOT NULL PRIMARY KEY, locked_by varchar(100) NULL,
	lock_process integer NULL, locked_until datetime NULL,
	created_at datetime NOT NULL, updated_at datetime NOT NULL)`
	}
}

func newDjangoLocker(ctx context.Context, t *target, table string, poll time.Duration, create bool) (*djangoLocker, error) {
	if create {
		if err := t.exec(ctx, djangoDDL(t, table)); err != nil {
			return nil, fmt.Errorf("django table: %w", err)
		}
	}
	host, _ := os.Hostname()
	d := &djangoLocker{t: t, db: t.sqlDB, table: table, poll: poll, owner: host, pid: int64(os.Getpid())}
	if t.kind == dbMySQL {
		db, err := readCommittedPool(t)
		if err != nil {
			return nil, err
		}
		d.db = db
	}
	if t.kind != dbSQLite { // Django drops FOR UPDATE where the database has none
		d.forUpd = " FOR UPDATE"
	}
	q := t.quote(table)
	prep := []struct {
		dst **sql.Stmt
		q   string
	}{
		{&d.stmts.cleanCount, `SELECT COUNT(*) FROM ` + q + ` WHERE locked_until < ? AND locked_until IS NOT NULL`},
		{&d.stmts.cleanDelete, `DELETE FROM ` + q + ` WHERE locked_until < ? AND locked_until IS NOT NULL`},
		{&d.stmts.count, `SELECT COUNT(*) FROM ` + q + ` WHERE name = ?`},
		{&d.stmts.lockRow, `SELECT name FROM ` + q + ` WHERE name = ?` + d.forUpd},
		{&d.stmts.insert, `INSERT INTO ` + q + ` (name, locked_by, lock_process, locked_until, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)`},
		{&d.stmts.save, `UPDATE ` + q + ` SET locked_by = ?, lock_process = ?, locked_until = ?, created_at = ?, updated_at = ? WHERE name = ?`},
		{&d.stmts.del, `DELETE FROM ` + q + ` WHERE name = ?`},
		{&d.stmts.get, `SELECT name, locked_by, lock_process, locked_until, created_at FROM ` + q + ` WHERE name = ?`},
		{&d.stmts.renew, `UPDATE ` + q + ` SET locked_by = ?, lock_process = ?, locked_until = ?, created_at = ?, updated_at = ? WHERE name = ?`},
	}
	for _, p := range prep {
		st, err := d.db.PrepareContext(ctx, t.rebind(p.q))
		if err != nil {
			_ = d.close()
			return nil, fmt.Errorf("django: prepare %s: %w", firstLine(p.q), err)
		}
		*p.dst = st
	}
	return d, nil
}

func (d *djangoLocker) label() string { return lkDjango }

func (d *djangoLocker) session(context.Context) (session, error) { return sharedSession{d}, nil }

// djangoTx is Django's transaction.atomic: BEGIN/COMMIT at the outside, a
// SAVEPOINT when nested.
type djangoTx struct {
	tx    *sql.Tx
	depth int
}

func (d *djangoLocker) atomic(ctx context.Context, dt *djangoTx, fn func(tx *sql.Tx) error) error {
	if dt.tx == nil {
		tx, err := d.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		dt.tx = tx
		err = fn(tx)
		dt.tx = nil
		if err != nil {
			return errors.Join(err, tx.Rollback())
		}
		return tx.Commit()
	}
	dt.depth++
	sp := fmt.Sprintf("s%d", dt.depth)
	defer func() { dt.depth-- }()
	if _, err := dt.tx.ExecContext(ctx, "SAVEPOINT "+sp); err != nil {
		return err
	}
	if err := fn(dt.tx); err != nil {
		_, rerr := dt.tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT "+sp)
		return errors.Join(err, rerr)
	}
	_, err := dt.tx.ExecContext(ctx, "RELEASE SAVEPOINT "+sp)
	return err
}

// stmt binds a prepared statement to the transaction when there is one.
func stmt(ctx context.Context, tx *sql.Tx, s *sql.Stmt) *sql.Stmt {
	if tx == nil {
		return s
	}
	return tx.StmtContext(ctx, s)
}

func (d *djangoLocker) cleanLocks(ctx context.Context, dt *djangoTx) error {
	return d.atomic(ctx, dt, func(tx *sql.Tx) error {
		now := d.t.timeArg(time.Now())
		var n int64
		if err := stmt(ctx, tx, d.stmts.cleanCount).QueryRowContext(ctx, now).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		_, err := stmt(ctx, tx, d.stmts.cleanDelete).ExecContext(ctx, now)
		return err
	})
}

// getLock is django-lockmgr's get_lock; dt carries an enclosing transaction.
func (d *djangoLocker) getLock(ctx context.Context, dt *djangoTx, name string, ttl time.Duration) error {
	if err := d.cleanLocks(ctx, dt); err != nil {
		return err
	}
	var n int64
	if err := stmt(ctx, dt.tx, d.stmts.count).QueryRowContext(ctx, name).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return errHeld
	}
	return d.atomic(ctx, dt, func(tx *sql.Tx) error {
		rows, err := stmt(ctx, tx, d.stmts.lockRow).QueryContext(ctx, name)
		if err != nil {
			return err
		}
		found := rows.Next()
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return err
		}
		if found {
			return errHeld
		}
		now := time.Now()
		until, at := d.t.timeArg(now.Add(ttl)), d.t.timeArg(now)
		if _, err := stmt(ctx, tx, d.stmts.insert).ExecContext(ctx, name, d.owner, d.pid, until, at, at); err != nil {
			if isDuplicate(err) { // a racing loser: Django raises IntegrityError
				return errHeld
			}
			return err
		}
		_, err = stmt(ctx, tx, d.stmts.save).ExecContext(ctx, d.owner, d.pid, until, at, d.t.timeArg(time.Now()), name)
		return err
	})
}

func (d *djangoLocker) lock(ctx context.Context, name string, ttl, wait time.Duration) (any, error) {
	try := func() (any, error) {
		err := d.getLock(ctx, &djangoTx{}, name, ttl)
		if err != nil && !errors.Is(err, errHeld) {
			return nil, describe(lkDjango, err)
		}
		return name, err
	}
	if wait <= 0 {
		return try()
	}
	return pollWait(ctx, wait, d.poll, try)
}

func (d *djangoLocker) unlock(ctx context.Context, held any) error {
	_, err := d.stmts.del.ExecContext(ctx, held.(string))
	return describe(lkDjango, err)
}

// setLock is django-lockmgr's set_lock(*names, timeout=ttl) with its
// defaults: create and renew every name in one transaction.
func (d *djangoLocker) setLock(ctx context.Context, names []string, ttl time.Duration) error {
	dt := &djangoTx{}
	err := d.atomic(ctx, dt, func(tx *sql.Tx) error {
		dt.depth++ // transaction.savepoint() right after BEGIN
		if _, err := tx.ExecContext(ctx, "SAVEPOINT s0"); err != nil {
			return err
		}
		for _, name := range names {
			err := d.getLock(ctx, dt, name, ttl)
			if errors.Is(err, errHeld) {
				err = d.renewLock(ctx, dt, name, ttl)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	return describe(lkDjango, err)
}

// renewLock is the Locked branch of set_lock: Lock.objects.get, then
// renew_lock (clean_locks, atomic { get, refresh_from_db, save }).
func (d *djangoLocker) renewLock(ctx context.Context, dt *djangoTx, name string, ttl time.Duration) error {
	var row [5]any
	var ns [5]sql.NullString
	for i := range row {
		row[i] = &ns[i]
	}
	if err := stmt(ctx, dt.tx, d.stmts.get).QueryRowContext(ctx, name).Scan(row[:]...); err != nil {
		return err
	}
	if err := d.cleanLocks(ctx, dt); err != nil {
		return err
	}
	return d.atomic(ctx, dt, func(tx *sql.Tx) error {
		if err := stmt(ctx, tx, d.stmts.get).QueryRowContext(ctx, name).Scan(row[:]...); err != nil {
			return err
		}
		now := time.Now()
		_, err := stmt(ctx, tx, d.stmts.renew).ExecContext(ctx, d.owner, d.pid,
			d.t.timeArg(now.Add(ttl)), d.t.timeArg(now), d.t.timeArg(now), name)
		return err
	})
}

func (d *djangoLocker) clear(ctx context.Context) error {
	return d.t.exec(ctx, "DELETE FROM "+d.t.quote(d.table))
}

func (d *djangoLocker) close() error {
	var errs []error
	if d.db != d.t.sqlDB {
		defer d.db.Close()
	}
	for _, st := range []*sql.Stmt{d.stmts.cleanCount, d.stmts.cleanDelete, d.stmts.count, d.stmts.lockRow,
		d.stmts.insert, d.stmts.save, d.stmts.del, d.stmts.get, d.stmts.renew} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	return errors.Join(errs...)
}

// readCommittedPool opens a second pool on t's MariaDB/MySQL database whose
// sessions use READ COMMITTED, the isolation Django (since 2.0) sets on
// MySQL connections. Under MariaDB's default REPEATABLE READ the algorithm's
// SELECT … FOR UPDATE of a missing row takes gap locks and concurrent
// get_lock calls deadlock.
func readCommittedPool(t *target) (*sql.DB, error) {
	cfg, err := mysqldrv.ParseDSN(t.dsn)
	if err != nil {
		return nil, fmt.Errorf("django: %w", err)
	}
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	v := "transaction_isolation" // MySQL 8
	if strings.Contains(t.version, "MariaDB") {
		v = "tx_isolation"
	}
	cfg.Params[v] = "'READ-COMMITTED'"
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return nil, fmt.Errorf("django: %w", err)
	}
	st := t.sqlDB.Stats()
	db.SetMaxOpenConns(st.MaxOpenConnections)
	db.SetMaxIdleConns(st.MaxOpenConnections)
	return db, nil
}

// isDuplicate reports a unique-key violation on any of the three drivers.
func isDuplicate(err error) bool {
	s := err.Error()
	return strings.Contains(s, "23505") || strings.Contains(s, "Duplicate entry") ||
		strings.Contains(s, "UNIQUE constraint failed") || strings.Contains(s, "1062")
}
