// Command invoice charges an invoice exactly once, however many workers
// try at the same time:
//
//	go run ./examples/invoice
//
// A scope (Manager.Do) on "invoice:42" lets one worker at a time in.
// Inside it, one transaction guarded by the scope's lock
// (Scope.Transaction: Manager.Guard first, so a worker that lost the lock
// — paused past its expiry while another took over — writes nothing)
// marks the invoice paid, reserves the stock of every order line with
// SetLock(…, Fail()) through Manager.WithTx — all lines or none — and
// records the charge. If any line's stock is held, the transaction rolls
// back, the lock rows SetLock wrote included, and the invoice stays open.
// The invoice lock is taken outside the transaction and guarded inside;
// the stock reservations are taken inside, to commit with the charge.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"gorm.io/gorm"

	"github.com/gormlock/lockmgr"
	"github.com/gormlock/lockmgr/examples/internal/demo"
)

func main() {
	if err := run(context.Background(), os.Stdout, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "invoice:", err)
		os.Exit(1)
	}
}

// Invoice is the application's invoice: open until charged, then paid.
type Invoice struct {
	ID      uint
	OrderID uint
	Cents   int64
	Status  string // "open" or "paid"
	PaidAt  *time.Time
}

// Line is one line of an order; its SKU's stock is reserved when the
// invoice is charged.
type Line struct {
	ID      uint
	OrderID uint
	SKU     string
	Qty     int
	Cents   int64 // per item
}

// Charge records money taken for an invoice, and the fence of the lock
// under which it was taken.
type Charge struct {
	ID        uint
	InvoiceID uint
	Cents     int64
	ChargedBy string
	Fence     int64
	CreatedAt time.Time
}

// shop is the example's state: its database, lock manager and tables.
type shop struct {
	db                       *gorm.DB
	m                        *lockmgr.Manager
	p                        *demo.Printer
	invoices, lines, charges string
}

const (
	invoiceID = 42
	orderID   = 7
)

var errAlreadyPaid = errors.New("already paid")

func run(ctx context.Context, out io.Writer, args []string) error {
	fs := flag.NewFlagSet("invoice", flag.ContinueOnError)
	fs.SetOutput(out)
	dsn := fs.String("dsn", "lockmgr-invoice.db", demo.DSNHelp)
	table := fs.String("table", lockmgr.DefaultTable, "the lock table")
	prefix := fs.String("prefix", "demo_", "prefix of the example's own tables (invoices, order_lines, charges)")
	workers := fs.Int("workers", 3, "how many workers race to charge the invoice")
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
	s := &shop{db: db.DB, m: m, p: demo.NewPrinter(out, false),
		invoices: *prefix + "invoices", lines: *prefix + "order_lines", charges: *prefix + "charges"}
	if err := s.reset(ctx); err != nil {
		return err
	}
	s.p.Printf("lockmgr invoice example on %s.", db.Where)
	return s.story(ctx, *workers)
}

// story plays the two rounds and shows what the database holds afterwards.
func (s *shop) story(ctx context.Context, workers int) error {
	lines, err := s.orderLines(ctx)
	if err != nil {
		return err
	}
	s.p.Printf("Invoice %d (order %d): %s, open.", invoiceID, orderID, describe(lines))
	s.p.Printf("")

	stock, err := s.m.GetLock(ctx, "stock:chair", lockmgr.LockedBy("warehouse"), lockmgr.Expires(time.Minute))
	if err != nil {
		return err
	}
	s.p.Printf("Round 1: the warehouse is counting chairs and holds stock:chair.")
	s.charge(ctx, "worker-1", lines)
	if err := s.report(ctx, "  Afterwards"); err != nil {
		return err
	}
	if err := s.m.Release(ctx, stock); err != nil {
		return err
	}
	s.p.Printf("")
	s.p.Printf("The warehouse is done and releases stock:chair.")
	s.p.Printf("")
	s.p.Printf("Round 2: %d workers get the same \"charge invoice %d\" message and run at once.", workers, invoiceID)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.charge(ctx, fmt.Sprintf("worker-%d", i+1), lines)
		}()
	}
	wg.Wait()
	s.p.Printf("")
	return s.report(ctx, "Result")
}

// charge is one worker's attempt to charge the invoice; it prints what
// happened.
func (s *shop) charge(ctx context.Context, worker string, lines []Line) {
	asked := time.Now()
	err := s.m.Do(ctx, fmt.Sprintf("invoice:%d", invoiceID), func(ctx context.Context, scope *lockmgr.Scope) error {
		fence := scope.Main().Fence
		s.p.Printf("  %s: holds invoice:%d (fence %d) after %s; starts a transaction",
			worker, invoiceID, fence, time.Since(asked).Round(time.Millisecond))
		// The guard holds the invoice lock's row until the commit: no one
		// takes it over meanwhile, and a lock already lost is ErrNotHeld
		// before any write, which rolls everything back.
		return scope.Transaction(ctx, func(tx *gorm.DB) error {
			return s.chargeInTx(ctx, tx, worker, fence, lines)
		})
	}, lockmgr.Expires(30*time.Second), lockmgr.Wait(10*time.Second), lockmgr.LockedBy(worker))

	var held *lockmgr.LockFail
	switch {
	case err == nil:
		s.p.Printf("  %s: reserved the stock of every line and charged %s", worker, money(total(lines)))
	case errors.Is(err, errAlreadyPaid):
		s.p.Printf("  %s: invoice %d is already paid; nothing to do", worker, invoiceID)
	case errors.As(err, &held):
		s.p.Printf("  %s: %s is held by %s, so the transaction rolled back", worker, held.Lock.Name, held.Lock.LockedBy)
	case errors.Is(err, lockmgr.ErrLocked):
		s.p.Printf("  %s: another worker kept invoice:%d for too long; will retry later", worker, invoiceID)
	case errors.Is(err, lockmgr.ErrNotHeld):
		s.p.Printf("  %s: lost invoice:%d before writing (%v); nothing was written", worker, invoiceID, err)
	default:
		s.p.Printf("  %s: failed: %v", worker, err)
	}
}

// chargeInTx does the charge's writes in tx: all of them commit, or none.
func (s *shop) chargeInTx(ctx context.Context, tx *gorm.DB, worker string, fence int64, lines []Line) error {
	// Mark the invoice paid if it is still open (the guard, a write, has
	// already taken SQLite's write lock).
	now := time.Now().UTC()
	res := tx.Table(s.invoices).Where("id = ? AND status = ?", invoiceID, "open").
		Updates(map[string]any{"status": "paid", "paid_at": now})
	if res.Error != nil {
		return res.Error
	}
	if res.RowsAffected == 0 {
		return errAlreadyPaid
	}
	// Reserve every line's stock for shipping, all or nothing: with Fail,
	// SetLock stops at the first held name and undoes its own writes; the
	// error then rolls back the whole transaction.
	_, err := s.m.WithTx(tx).SetLock(ctx, stockLocks(lines), lockmgr.Fail(),
		lockmgr.Expires(time.Hour), lockmgr.LockedBy(worker))
	if err != nil {
		return err
	}
	// The payment provider would be called here, with the invoice as its
	// idempotency key. The charge row records the fence it was taken under.
	return tx.Table(s.charges).Create(&Charge{InvoiceID: invoiceID, Cents: total(lines),
		ChargedBy: worker, Fence: fence, CreatedAt: now}).Error
}

// report prints the invoice's status, its charges and the stock locks.
func (s *shop) report(ctx context.Context, title string) error {
	var inv Invoice
	if err := s.db.WithContext(ctx).Table(s.invoices).First(&inv, invoiceID).Error; err != nil {
		return err
	}
	var charges []Charge
	if err := s.db.WithContext(ctx).Table(s.charges).Where("invoice_id = ?", invoiceID).Find(&charges).Error; err != nil {
		return err
	}
	s.p.Printf("%s: invoice %d is %s; %d charge(s) recorded.", title, invoiceID, inv.Status, len(charges))
	for _, c := range charges {
		s.p.Printf("  charge #%d: %s by %s under fence %d", c.ID, money(c.Cents), c.ChargedBy, c.Fence)
	}
	locks, err := s.m.List(ctx)
	if err != nil {
		return err
	}
	n := 0
	for _, l := range locks {
		if len(l.Name) > 6 && l.Name[:6] == "stock:" && l.LockedBy != "warehouse" {
			if n == 0 {
				s.p.Printf("  Stock reserved for shipping:")
			}
			s.p.Printf("    %s", l.String())
			n++
		}
	}
	if n == 0 {
		s.p.Printf("  No stock is reserved: SetLock's rows went with the rollback.")
	}
	return nil
}
