package main

import (
	"context"
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
	return demo.RunReplicas(ctx, p, c.replicas, func(i int, name string) []string {
		lag := time.Duration(0)
		if i == c.replicas-1 {
			lag = c.late
		}
		return []string{"-dsn", c.dsn, "-table", c.table, "-replicas", "1", "-name", name,
			"-for", c.length.String(), "-every", c.every.String(), "-lag", lag.String()}
	})
}
