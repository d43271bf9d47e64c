package lockmgr_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"gorm.io/gorm"

	"github.com/gormlock/lockmgr"
)

// invoice is what the examples below write under a lock.
type invoice struct {
	ID     uint `gorm:"primaryKey"`
	Number string
}

// Locks go outside the transaction, Guard goes inside: take the lock on
// its own (GetLock, Do, Acquire), then, in each transaction that writes
// what the lock protects, call Guard before the writes. A holder that
// paused past its expiry while someone else took the lock over gets
// ErrNotHeld, and nothing it wrote commits.
func ExampleManager_Guard() {
	db, m, done := guardExample()
	defer done()
	ctx := context.Background()
	if err := db.AutoMigrate(&invoice{}); err != nil {
		log.Fatal(err)
	}
	l, err := m.GetLock(ctx, "invoices")
	if err != nil {
		log.Fatal(err)
	}
	write := func(number string) error {
		return db.Transaction(func(tx *gorm.DB) error {
			if err := m.Guard(ctx, tx, l); err != nil {
				return err // rolls back: nothing below runs
			}
			return tx.Create(&invoice{Number: number}).Error
		})
	}
	fmt.Println("while held:", write("2026-0001"))
	_ = m.Release(ctx, l) // as if it had expired and been taken over
	err = write("2026-0002")
	fmt.Println("after release:", errors.Is(err, lockmgr.ErrNotHeld))
	var n int64
	db.Model(&invoice{}).Count(&n)
	fmt.Println("invoices:", n)
	// Output:
	// while held: <nil>
	// after release: true
	// invoices: 1
}

// Scope.Transaction is the common case in one line: a transaction
// guarded by the scope's main lock. It may run longer than the lock's
// expiry: the lock stays the scope's.
func ExampleScope_Transaction() {
	db, m, done := guardExample()
	defer done()
	ctx := context.Background()
	if err := db.AutoMigrate(&invoice{}); err != nil {
		log.Fatal(err)
	}
	err := m.Do(ctx, "invoices", func(ctx context.Context, s *lockmgr.Scope) error {
		return s.Transaction(ctx, func(tx *gorm.DB) error {
			return tx.Create(&invoice{Number: "2026-0001"}).Error
		})
	})
	fmt.Println(err)
	// Output: <nil>
}

// WithTx runs lock calls inside the caller's transaction: they commit or
// roll back with it. A lock taken so is not a lock for the transaction's
// life: others cannot see it until the commit, wait on its row meanwhile,
// and it lasts its whole expiry after the commit. To protect a
// transaction's writes, take the lock outside and Guard it inside.
func ExampleManager_WithTx() {
	db, m, done := guardExample()
	defer done()
	ctx := context.Background()
	err := db.Transaction(func(tx *gorm.DB) error {
		_, err := m.WithTx(tx).GetLock(ctx, "batch-42")
		return err // an error here would roll the lock back too
	})
	fmt.Println(err)
	held, _ := m.IsLocked(ctx, "batch-42")
	fmt.Println("held after the commit:", held)
	// Output:
	// <nil>
	// held after the commit: true
}

// guardExample opens a fresh database, as the application's own *gorm.DB,
// and a Manager on it with its table created.
func guardExample() (*gorm.DB, *lockmgr.Manager, func()) {
	db, done := exampleDB()
	m, err := lockmgr.New(db)
	if err != nil {
		log.Fatal(err)
	}
	if err := m.AutoMigrate(context.Background()); err != nil {
		log.Fatal(err)
	}
	return db, m, done
}
