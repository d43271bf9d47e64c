package lockmgr_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/gormlock/lockmgr"
)

// At most two exports at once, across every process on the database: each
// export holds one of the semaphore's two slots while it runs.
func ExampleSemaphore() {
	m, done := exampleManager()
	defer done()
	ctx := context.Background()

	exports, err := lockmgr.NewSemaphore(m, "exports", 2)
	if err != nil {
		log.Fatal(err)
	}
	a, err := exports.Acquire(ctx, lockmgr.Expires(time.Minute))
	if err != nil {
		log.Fatal(err)
	}
	b, err := exports.Acquire(ctx, lockmgr.Expires(time.Minute))
	if err != nil {
		log.Fatal(err)
	}
	holders, _ := exports.Holders(ctx)
	fmt.Println(len(holders), "exports running")

	// A third is turned away (or, with Wait, waits for a slot).
	_, err = exports.Acquire(ctx)
	fmt.Println(errors.Is(err, lockmgr.ErrLocked))

	if err := exports.Release(ctx, a); err != nil {
		log.Fatal(err)
	}
	// Do holds a slot while fn runs, kept alive; losing it cancels ctx.
	err = exports.Do(ctx, func(ctx context.Context, s *lockmgr.Scope) error {
		fmt.Println("exporting in a free slot")
		return nil
	}, lockmgr.Wait(10*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	_ = exports.Release(ctx, b)
	// Output:
	// 2 exports running
	// true
	// exporting in a free slot
}
