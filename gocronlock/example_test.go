package gocronlock_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/go-co-op/gocron/v2"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/gormlock/lockmgr"
	"github.com/gormlock/lockmgr/gocronlock"
)

// Two replicas schedule the same job; it runs on one of them.
func Example() {
	dir, _ := os.MkdirTemp("", "gocronlock")
	defer os.RemoveAll(dir)
	db, _ := gorm.Open(sqlite.Open("file:"+filepath.Join(dir, "app.db")+"?_busy_timeout=10000&_journal_mode=WAL"),
		&gorm.Config{Logger: logger.Discard})
	if sqlDB, err := db.DB(); err == nil {
		defer sqlDB.Close()
	}
	ctx := context.Background()
	var runs atomic.Int32
	for _, replica := range []string{"replica-1", "replica-2"} {
		m, err := lockmgr.New(db, lockmgr.WithOwner(replica))
		if err != nil {
			panic(err)
		}
		if err := m.AutoMigrate(ctx); err != nil {
			panic(err)
		}
		// The job runs every second: its lock is held for half a second
		// at least (LockAtLeastFor) and 750 ms at most (LockAtMostFor).
		locker, err := gocronlock.NewLocker(m, gocronlock.Interval(time.Second))
		if err != nil {
			panic(err)
		}
		defer locker.Close(ctx) // after Shutdown: deletes the last tick's row once its hold has passed
		s, err := gocron.NewScheduler(gocron.WithDistributedLocker(locker))
		if err != nil {
			panic(err)
		}
		defer s.Shutdown()
		_, err = s.NewJob(gocron.OneTimeJob(gocron.OneTimeJobStartImmediately()),
			gocron.NewTask(func() { runs.Add(1) }), gocron.WithName("report"))
		if err != nil {
			panic(err)
		}
		s.Start()
	}
	time.Sleep(300 * time.Millisecond)
	fmt.Println("runs:", runs.Load())
	// Output: runs: 1
}
