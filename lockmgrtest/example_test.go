package lockmgrtest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gormlock/lockmgr"
	"github.com/gormlock/lockmgr/lockmgrtest"
)

// These examples run the body of a test: in your own, t is its *testing.T.
// runTest stands in for the go test runner: it runs test with a testing.TB
// of its own and returns "ok", or "FAIL" and the test's failures.
func runTest(test func(t testing.TB)) string {
	t := &exampleT{}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // like go test, on a goroutine that Fatalf may end
		defer wg.Done()
		defer t.cleanup()
		test(t)
	}()
	wg.Wait()
	if len(t.failures) > 0 {
		return "FAIL: " + strings.Join(t.failures, "; ")
	}
	return "ok"
}

// ExampleNew tests code that takes a lock, on a Manager of its own.
func ExampleNew() {
	fmt.Println(runTest(func(t testing.TB) {
		m := lockmgrtest.New(t, lockmgr.WithOwner("worker-1"))
		l, err := m.GetLock(context.Background(), "nightly-report")
		if err != nil {
			t.Fatalf("GetLock: %v", err)
		}
		if l.LockedBy != "worker-1" {
			t.Errorf("LockedBy = %q", l.LockedBy)
		}
	}))
	// Output: ok
}

// ExampleSteal tests that code which renews its lock by hand notices that
// someone else has it.
func ExampleSteal() {
	fmt.Println(runTest(func(t testing.TB) {
		ctx := context.Background()
		m := lockmgrtest.New(t)
		l, _ := m.GetLock(ctx, "nightly-report")
		thief := lockmgrtest.Steal(t, m, "nightly-report")
		if _, err := m.Renew(ctx, l); !errors.Is(err, lockmgr.ErrNotHeld) {
			t.Errorf("Renew of a stolen lock: %v, want ErrNotHeld", err)
		}
		if _, err := m.GetLock(ctx, "nightly-report"); !errors.Is(err, lockmgr.ErrLocked) {
			t.Errorf("GetLock of a stolen lock: %v, want ErrLocked", err)
		}
		fmt.Println("now held by", thief.LockedBy)
	}))
	// Output:
	// now held by lockmgrtest
	// ok
}

// ExampleExpire tests that work under a scope stops when its lock
// expires, and that the lock can be taken again.
func ExampleExpire() {
	fmt.Println(runTest(func(t testing.TB) {
		ctx := context.Background()
		m := lockmgrtest.New(t)
		err := m.Do(ctx, "nightly-report", func(ctx context.Context, _ *lockmgr.Scope) error {
			lockmgrtest.Expire(t, m, "nightly-report")
			<-ctx.Done() // cancelled at the scope's next keep-alive renewal
			return context.Cause(ctx)
		}, lockmgr.KeepAliveEvery(10*time.Millisecond))
		fmt.Println("lost:", errors.Is(err, lockmgr.ErrLockLost))
		if _, err := m.GetLock(ctx, "nightly-report"); err != nil {
			t.Errorf("GetLock after the expiry: %v", err)
		}
	}))
	// Output:
	// lost: true
	// ok
}

// A job of the code under test: it writes items while it holds its lock.
type job func(ctx context.Context, write func(item int)) error

// careful stops when its context ends.
func careful(ctx context.Context, write func(int)) error {
	for i := range 10 {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		write(i)
	}
	return nil
}

// careless ignores its context: it goes on writing after its lock is lost.
func careless(_ context.Context, write func(int)) error {
	for i := range 10 {
		write(i)
	}
	return nil
}

// testStopsOnLoss is a test of the code under test: the job's lock is
// stolen after its third item, and no item may be written once the job's
// context has told it so.
func testStopsOnLoss(t testing.TB, run job) {
	m := lockmgrtest.New(t)
	late := 0
	err := m.Do(context.Background(), "nightly-report", func(ctx context.Context, _ *lockmgr.Scope) error {
		return run(ctx, func(item int) {
			if ctx.Err() != nil {
				late++
			}
			if item == 2 {
				lockmgrtest.Steal(t, m, "nightly-report")
				<-ctx.Done() // the scope's next keep-alive renewal finds the loss
			}
		})
	}, lockmgr.KeepAliveEvery(10*time.Millisecond))
	if !errors.Is(err, lockmgr.ErrLockLost) {
		t.Errorf("Do: %v, want ErrLockLost", err)
	}
	if late > 0 {
		t.Errorf("the job wrote %d items after its lock was lost: it ignores its context", late)
	}
}

// Example_doIgnoresContext: a test written with lockmgrtest catches a Do
// whose work ignores its context.
func Example_doIgnoresContext() {
	fmt.Println("careful:", runTest(func(t testing.TB) { testStopsOnLoss(t, careful) }))
	fmt.Println("careless:", runTest(func(t testing.TB) { testStopsOnLoss(t, careless) }))
	// Output:
	// careful: ok
	// careless: FAIL: the job wrote 7 items after its lock was lost: it ignores its context
}

// exampleT is the testing.TB runTest gives a test.
type exampleT struct {
	testing.TB // only the methods below are called
	failures   []string
	cleanups   []func()
}

func (t *exampleT) Helper()          {}
func (t *exampleT) Cleanup(f func()) { t.cleanups = append(t.cleanups, f) }
func (t *exampleT) Errorf(format string, args ...any) {
	t.failures = append(t.failures, fmt.Sprintf(format, args...))
}

func (t *exampleT) Fatalf(format string, args ...any) {
	t.Errorf(format, args...)
	runtime.Goexit()
}

func (t *exampleT) TempDir() string {
	dir, err := os.MkdirTemp("", "lockmgrtest")
	if err != nil {
		t.Fatalf("TempDir: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func (t *exampleT) cleanup() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
}
