package lockmgr_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/gormlock/lockmgr"
)

// Benchmarks of the hot paths on every configured database, for time and
// allocations per call (go test -bench . -benchmem -run '^$'). The
// comparisons with other ways of locking live in the bench module.

func benchEachDB(b *testing.B, fn func(b *testing.B, m *lockmgr.Manager)) {
	for _, be := range backends() {
		b.Run(be.name, func(b *testing.B) {
			db := be.open(b)
			table := uniqueTable()
			b.Cleanup(func() { _ = db.Migrator().DropTable(table, table+"_fence") })
			m, err := lockmgr.New(db, lockmgr.WithTable(table))
			if err != nil {
				b.Fatal(err)
			}
			if err := m.AutoMigrate(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			fn(b, m)
		})
	}
}

// BenchmarkCycle is GetLock + Release of a free name: two statements.
func BenchmarkCycle(b *testing.B) {
	benchEachDB(b, func(b *testing.B, m *lockmgr.Manager) {
		ctx := context.Background()
		for i := 0; b.Loop(); i++ {
			l, err := m.GetLock(ctx, fmt.Sprint("cycle-", i%64))
			if err != nil {
				b.Fatal(err)
			}
			if err := m.Release(ctx, l); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkContended is a GetLock that finds the name held: one statement.
func BenchmarkContended(b *testing.B) {
	benchEachDB(b, func(b *testing.B, m *lockmgr.Manager) {
		ctx := context.Background()
		if _, err := m.GetLock(ctx, "held"); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := m.GetLock(ctx, "held"); err == nil {
				b.Fatal("took a held lock")
			}
		}
	})
}

// BenchmarkRenew is an owner-checked renewal: one statement.
func BenchmarkRenew(b *testing.B) {
	benchEachDB(b, func(b *testing.B, m *lockmgr.Manager) {
		ctx := context.Background()
		l, err := m.GetLock(ctx, "renewed")
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if l, err = m.Renew(ctx, l); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkIsLocked is one read.
func BenchmarkIsLocked(b *testing.B) {
	benchEachDB(b, func(b *testing.B, m *lockmgr.Manager) {
		ctx := context.Background()
		for b.Loop() {
			if _, err := m.IsLocked(ctx, "absent"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
