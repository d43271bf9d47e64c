package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gormlock/lockmgr/examples/internal/demo"
)

// supervise starts c.replicas copies of this program as replicas, the last
// one's scheduler c.late behind, and relays what they print.
func supervise(ctx context.Context, p *demo.Printer, where string, c *config) error {
	p.Printf("Starting %d replicas on %s, one tick every %s; the last one's scheduler runs %s late.",
		c.replicas, where, c.every, c.late)
	p.Printf("Each tick, exactly one replica runs the job.")
	p.Printf("")
	var children []*demo.Child
	for i := range c.replicas {
		name := fmt.Sprintf("replica-%d", i+1)
		lag := time.Duration(0)
		if i == c.replicas-1 {
			lag = c.late
		}
		args := []string{"-dsn", c.dsn, "-table", c.table, "-replicas", "1", "-name", name,
			"-for", c.length.String(), "-every", c.every.String(), "-lag", lag.String()}
		child, err := demo.StartChild(ctx, name, args, func(line string) { p.Printf("%s", line) })
		if err != nil {
			return err
		}
		children = append(children, child)
	}
	var errs []error
	for _, child := range children {
		errs = append(errs, child.Wait())
	}
	if ctx.Err() != nil {
		return nil
	}
	return errors.Join(errs...)
}
