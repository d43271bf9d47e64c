package lockmgr_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/gormlock/lockmgr"
)

// The README's snippets are excerpts of these examples; readme_test.go
// checks that they still are.

// exampleDB opens a fresh SQLite database in a temporary directory, with
// the settings the README recommends. done closes and removes it.
func exampleDB() (db *gorm.DB, done func()) {
	dir, err := os.MkdirTemp("", "lockmgr-example-")
	if err != nil {
		log.Fatal(err)
	}
	db, err = gorm.Open(sqlite.Open("file:"+dir+"/locks.db?_busy_timeout=10000&_journal_mode=WAL"),
		&gorm.Config{Logger: logger.Discard})
	if err != nil {
		log.Fatal(err)
	}
	return db, func() {
		if s, err := db.DB(); err == nil {
			_ = s.Close()
		}
		_ = os.RemoveAll(dir)
	}
}

// exampleManager returns a Manager on a fresh database with its table
// created.
func exampleManager() (m *lockmgr.Manager, done func()) {
	db, done := exampleDB()
	m, err := lockmgr.New(db)
	if err != nil {
		log.Fatal(err)
	}
	if err := m.AutoMigrate(context.Background()); err != nil {
		log.Fatal(err)
	}
	return m, done
}

// A whole program: open the database the application already uses, bind
// a Manager to it, create the table, and take a lock.
func Example() {
	dir, err := os.MkdirTemp("", "lockmgr-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()

	db, err := gorm.Open(sqlite.Open("file:"+dir+"/locks.db?_busy_timeout=10000&_journal_mode=WAL"), &gorm.Config{})
	if err != nil {
		log.Fatal(err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		log.Fatal(err)
	}
	defer sqlDB.Close()

	m, err := lockmgr.New(db)
	if err != nil {
		log.Fatal(err)
	}
	if err := m.AutoMigrate(ctx); err != nil { // creates lockmgr_lock; safe on every start
		log.Fatal(err)
	}

	l, err := m.GetLock(ctx, "nightly-report", lockmgr.Expires(10*time.Minute))
	if errors.Is(err, lockmgr.ErrLocked) {
		fmt.Println("another replica is running the report")
		return
	}
	if err != nil {
		log.Fatal(err)
	}
	defer m.Release(ctx, l)
	fmt.Println("running the report")
	// Output: running the report
}

func ExampleManager_GetLock() {
	m, done := exampleManager()
	defer done()
	ctx := context.Background()

	l, err := m.GetLock(ctx, "invoice:42", lockmgr.Expires(30*time.Second))
	if errors.Is(err, lockmgr.ErrLocked) {
		fmt.Println("someone else is charging invoice 42")
		return
	}
	if err != nil {
		log.Fatal(err)
	}
	defer m.Release(ctx, l)
	fmt.Println("charging invoice 42")

	// Anyone else is turned away at once; Wait(d) would retry for up to d.
	_, err = m.GetLock(ctx, "invoice:42", lockmgr.Wait(100*time.Millisecond))
	fmt.Println(err)
	// Output:
	// charging invoice 42
	// lockmgr: lock is held: "invoice:42"
}

func ExampleManager_Release() {
	m, done := exampleManager()
	defer done()
	ctx := context.Background()

	l, err := m.GetLock(ctx, "deploy")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(m.Release(ctx, l))

	// The second release fails: l's token no longer holds "deploy", and
	// Release never deletes a lock someone else may hold by now.
	err = m.Release(ctx, l)
	fmt.Println(errors.Is(err, lockmgr.ErrNotHeld))
	// Output:
	// <nil>
	// true
}

func ExampleManager_Renew() {
	m, done := exampleManager()
	defer done()
	ctx := context.Background()

	l, err := m.GetLock(ctx, "export", lockmgr.Expires(time.Minute))
	if err != nil {
		log.Fatal(err)
	}
	// Renewing never shortens a lock: asking for 10 s leaves the minute.
	l, err = m.Renew(ctx, l, lockmgr.Expires(10*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	left, _ := l.ExpiresIn()
	fmt.Println(left.Round(time.Minute))

	// AddTime adds to the current expiry.
	l, err = m.Renew(ctx, l, lockmgr.Expires(time.Minute), lockmgr.AddTime())
	if err != nil {
		log.Fatal(err)
	}
	left, _ = l.ExpiresIn()
	fmt.Println(left.Round(time.Minute))

	// Once the lock is gone (here an operator cleared it), Renew says so.
	if err := m.Unlock(ctx, "export"); err != nil {
		log.Fatal(err)
	}
	_, err = m.Renew(ctx, l)
	fmt.Println(errors.Is(err, lockmgr.ErrNotHeld))
	// Output:
	// 1m0s
	// 2m0s
	// true
}

func ExampleManager_Do() {
	m, done := exampleManager()
	defer done()
	ctx := context.Background()

	err := m.Do(ctx, "nightly-report", func(ctx context.Context, s *lockmgr.Scope) error {
		// The lock is renewed in the background while this runs; ctx is
		// cancelled, with cause lockmgr.ErrLockLost, if it is lost anyway.
		fmt.Println("running the report")
		return nil
	}, lockmgr.Expires(time.Minute), lockmgr.Wait(5*time.Second))
	if errors.Is(err, lockmgr.ErrLocked) {
		fmt.Println("another replica ran it")
	} else if err != nil {
		log.Fatal(err)
	}

	held, err := m.IsLocked(ctx, "nightly-report")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("held after Do:", held)
	// Output:
	// running the report
	// held after Do: false
}

func ExampleManager_SetLock() {
	m, done := exampleManager()
	defer done()
	ctx := context.Background()
	if _, err := m.GetLock(ctx, "stock:chair", lockmgr.LockedBy("warehouse")); err != nil {
		log.Fatal(err)
	}

	// All of an order's lines or none: with Fail, SetLock changes nothing
	// when any name is held.
	names := []string{"stock:desk", "stock:chair", "stock:lamp"}
	_, err := m.SetLock(ctx, names, lockmgr.Fail(), lockmgr.Expires(time.Hour))
	var held *lockmgr.LockFail
	if errors.As(err, &held) {
		fmt.Printf("%s is held by %s; nothing was locked\n", held.Lock.Name, held.Lock.LockedBy)
	}

	// Without Fail it locks free names and extends held ones, whoever
	// holds them, as django-lockmgr's set_lock does.
	res, err := m.SetLock(ctx, names, lockmgr.Expires(time.Hour))
	if err != nil {
		log.Fatal(err)
	}
	for _, st := range res.Statuses {
		fmt.Println(st.Name, st.Status)
	}
	fmt.Printf("%+v\n", res.Counts)
	// Output:
	// stock:chair is held by warehouse; nothing was locked
	// stock:desk create
	// stock:chair extend
	// stock:lamp create
	// {Created:2 Renewed:1 SkipCreate:0 SkipRenew:0}
}

func ExampleFromDB() {
	db, done := exampleDB()
	defer done()
	ctx := context.Background()

	// Once, where the *gorm.DB is opened: this creates the table too.
	if err := db.Use(lockmgr.NewPlugin()); err != nil {
		log.Fatal(err)
	}

	// Anywhere the *gorm.DB is at hand:
	m, err := lockmgr.FromDB(db)
	if err != nil {
		log.Fatal(err)
	}
	held, err := m.IsLocked(ctx, "deploy")
	fmt.Println(held, err)
	// Output: false <nil>
}
