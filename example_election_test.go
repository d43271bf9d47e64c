package lockmgr_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/gormlock/lockmgr"
)

// Leader election: every replica runs the same Election; one leads at a
// time. lead's context ends the moment leadership is in doubt, and Run
// campaigns again afterwards; Resign hands over at once.
func ExampleElection() {
	m, done := exampleManager()
	defer done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	e, err := lockmgr.NewElection(m, "scheduler", lockmgr.Identity("replica-1"), lockmgr.TTL(5*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	if _, err := e.Leader(ctx); errors.Is(err, lockmgr.ErrNoLeader) {
		fmt.Println("no leader yet")
	}
	terms := e.Observe(ctx) // any process may watch the leader change
	fmt.Printf("observed: %q\n", (<-terms).Identity)

	led, runDone := make(chan lockmgr.Term, 1), make(chan error, 1)
	go func() {
		runDone <- e.Run(ctx, func(ctx context.Context, t lockmgr.Term) error {
			led <- t     // the fence goes with every write of this term
			<-ctx.Done() // lead until told to stop; check ctx before each write
			return ctx.Err()
		})
	}()
	t := <-led
	fmt.Printf("%s leads, fence > 0: %v\n", t.Identity, t.Fence > 0)
	fmt.Printf("observed: %q\n", (<-terms).Identity)
	cancel() // Run waits for lead to return, then releases the lock
	fmt.Println(errors.Is(<-runDone, context.Canceled))
	// Output:
	// no leader yet
	// observed: ""
	// replica-1 leads, fence > 0: true
	// observed: "replica-1"
	// true
}
