// Command quickstart takes a lock, looks at it, renews it and releases it,
// then does the same with a scope. It runs on a SQLite file it creates in
// the current directory, or on the database -dsn names (any form the CLI takes):
//
//	go run ./examples/quickstart
//	go run ./examples/quickstart -dsn 'postgres://postgres@127.0.0.1:5432/test?sslmode=disable'
//	go run ./examples/quickstart -dsn 'root@tcp(127.0.0.1:3306)/test?parseTime=true'
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/gormlock/lockmgr"
	"github.com/gormlock/lockmgr/examples/internal/demo"
)

func main() {
	if err := run(context.Background(), os.Stdout, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

// lockName is the lock the quick start plays with.
const lockName = "quickstart:report"

func run(ctx context.Context, out io.Writer, args []string) error {
	fs := flag.NewFlagSet("quickstart", flag.ContinueOnError)
	fs.SetOutput(out)
	dsn := fs.String("dsn", "lockmgr-quickstart.db", demo.DSNHelp)
	table := fs.String("table", lockmgr.DefaultTable, "the lock table")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}

	db, err := demo.Open(*dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	m, err := lockmgr.New(db.DB, lockmgr.WithTable(*table))
	if err != nil {
		return err
	}
	if err := m.AutoMigrate(ctx); err != nil {
		return err
	}
	p := func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }
	p("lockmgr quick start: %s, table %q", db.Where, m.Table())
	p("")
	if err := tour(ctx, m, p); err != nil {
		return err
	}
	p("")
	p("Run it again: the fence keeps growing. Next: go run ./examples/cronjob")
	return nil
}

// tour takes, inspects, renews and releases one lock, then uses a scope.
func tour(ctx context.Context, m *lockmgr.Manager, p func(string, ...any)) error {
	// 1. Take the lock for 30 seconds.
	l, err := m.GetLock(ctx, lockName, lockmgr.Expires(30*time.Second))
	if errors.Is(err, lockmgr.ErrLocked) {
		return fmt.Errorf("%q is held by someone else (is another quick start running?); it expires within 30 s", lockName)
	}
	if err != nil {
		return err
	}
	p("1. GetLock took %q for 30s.", l.Name)
	p("   locked_by=%s lock_process=%d fence=%d token=%s…", l.LockedBy, *l.LockProcess, l.Fence, l.Token[:8])
	p("   It expires in %s.", left(l))

	// 2. Anyone else is turned away at once, and told why.
	_, err = m.GetLock(ctx, lockName, lockmgr.LockedBy("worker-2"))
	p("2. worker-2 asks for the same name: %v", err)
	p("   errors.Is(err, lockmgr.ErrLocked) = %t", errors.Is(err, lockmgr.ErrLocked))

	// 3. Look at it.
	held, err := m.IsLocked(ctx, lockName)
	if err != nil {
		return err
	}
	locks, err := m.List(ctx)
	if err != nil {
		return err
	}
	p("3. IsLocked = %t; List shows %d live lock(s):", held, len(locks))
	for _, x := range locks {
		p("   %s", x.String())
	}

	// 4. Renew it: owner-checked by token, and it never shortens a lock.
	l, err = m.Renew(ctx, l, lockmgr.Expires(2*time.Minute))
	if err != nil {
		return err
	}
	p("4. Renew for 2m: it now expires in %s.", left(l))

	// 5. Release it.
	if err := m.Release(ctx, l); err != nil {
		return err
	}
	held, err = m.IsLocked(ctx, lockName)
	if err != nil {
		return err
	}
	p("5. Release: IsLocked = %t.", held)

	// 6. Releasing what you no longer hold is an error, not a silent no-op:
	//    it would otherwise delete someone else's lock.
	err = m.Release(ctx, l)
	p("6. Release again: %v", err)
	p("   errors.Is(err, lockmgr.ErrNotHeld) = %t", errors.Is(err, lockmgr.ErrNotHeld))

	// 7. A scope holds the lock while a function runs, renews it in the
	//    background, and releases it however the function ends.
	err = m.Do(ctx, lockName, func(ctx context.Context, s *lockmgr.Scope) error {
		p("7. Do holds %q (fence %d) while its function runs.", lockName, s.Main().Fence)
		return nil
	}, lockmgr.Expires(30*time.Second))
	if err != nil {
		return err
	}
	held, err = m.IsLocked(ctx, lockName)
	if err != nil {
		return err
	}
	p("   After Do returned: IsLocked = %t.", held)
	return nil
}

// left is how long l has left, rounded for people.
func left(l *lockmgr.Lock) string {
	d, ok := l.ExpiresIn()
	if !ok {
		return "never"
	}
	return d.Round(time.Second).String()
}
