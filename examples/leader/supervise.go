package main

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/gormlock/lockmgr/examples/internal/demo"
)

// term is one leader's time in office, as its replica announced it.
type term struct {
	name  string
	fence int64
	at    time.Time
}

var leaderLine = regexp.MustCompile(`^\S+\s+(\S+)\s+LEADER, term fence (\d+)`)

// supervise starts c.replicas copies of this program, relays what they
// print, kills the first leader after c.killAfter as a crash would, and
// stops everyone after c.runFor.
func supervise(ctx context.Context, db *gorm.DB, p *demo.Printer, where string, c *config) error {
	if c.runFor > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.runFor)
		defer cancel()
	}
	p.Printf("supervisor: starting %d replicas on %s", c.replicas, where)
	p.Printf("supervisor: the leader's lock lasts %s and is renewed every %s while it lives", c.ttl, c.ttl/3)
	leaders := make(chan term, 64)
	children := map[string]*demo.Child{}
	for i := range c.replicas {
		name := fmt.Sprintf("replica-%d", i+1)
		args := []string{"-dsn", c.dsn, "-table", c.table, "-ledger", c.ledger, "-replicas", "1",
			"-name", name, "-ttl", c.ttl.String(), "-beat", c.beat.String()}
		child, err := demo.StartChild(ctx, name, args, func(line string) {
			_, _ = p.Write([]byte(line + "\n"))
			if m := leaderLine.FindStringSubmatch(line); m != nil {
				fence, _ := strconv.ParseInt(m[2], 10, 64)
				leaders <- term{name: m[1], fence: fence, at: time.Now()}
			}
		})
		if err != nil {
			return err
		}
		children[name] = child
	}
	terms, err := watch(ctx, p, c, children, leaders)
	for _, child := range children {
		if werr := child.Wait(); werr != nil && ctx.Err() == nil {
			err = errors.Join(err, werr)
		}
	}
	if err != nil {
		return err
	}
	return summary(db, p, c, terms)
}

// watch follows the terms as replicas announce them and kills the first
// leader after c.killAfter, until ctx ends.
func watch(ctx context.Context, p *demo.Printer, c *config, children map[string]*demo.Child, leaders <-chan term) ([]term, error) {
	var terms []term
	var kill <-chan time.Time
	var killed string
	var killedAt time.Time
	for {
		select {
		case <-ctx.Done():
			return terms, nil
		case t := <-leaders:
			terms = append(terms, t)
			if len(terms) == 1 && c.killAfter > 0 {
				kill = time.After(c.killAfter)
			}
			if killed != "" && t.name != killed {
				p.Printf("supervisor: %s took over %s after the crash; fence %d > %d",
					t.name, t.at.Sub(killedAt).Round(10*time.Millisecond), t.fence, terms[len(terms)-2].fence)
				killed = ""
			}
		case <-kill:
			leader := terms[len(terms)-1].name
			child := children[leader]
			if err := child.Cmd.Process.Kill(); err != nil {
				return terms, fmt.Errorf("kill %s: %w", leader, err)
			}
			killed, killedAt = leader, time.Now()
			p.Printf("supervisor: killing %s (pid %d) with SIGKILL, as a crash would; its lock expires within %s",
				leader, child.Cmd.Process.Pid, c.ttl)
			delete(children, leader)
			go func() { _ = child.Wait() }()
		}
	}
}

// summary lists the terms and what the ledger holds.
func summary(db *gorm.DB, p *demo.Printer, c *config, terms []term) error {
	var parts []string
	for _, t := range terms {
		parts = append(parts, fmt.Sprintf("%s (fence %d)", t.name, t.fence))
	}
	p.Printf("supervisor: terms: %s", strings.Join(parts, " → "))
	var l Ledger
	if err := db.Table(c.ledger).First(&l, 1).Error; err != nil {
		return err
	}
	p.Printf("supervisor: the ledger's last write: fence %d by %s; %d units of work in all", l.Fence, l.Leader, l.Beats)
	return nil
}
