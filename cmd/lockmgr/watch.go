package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/gormlock/lockmgr"
	"github.com/mattn/go-isatty"
)

// Watch events, as --watch --json prints them and the live view marks them.
const (
	evAdded    = "added"    // a new lock, or a new holder (a new fence)
	evRenewed  = "renewed"  // the same holder moved its expiry
	evReleased = "released" // the row went away before its expiry
	evExpired  = "expired"  // its expiry passed
)

// watchEvent is one change between two polls.
type watchEvent struct {
	Event string    `json:"event"`
	Name  string    `json:"name"`
	At    time.Time `json:"at"`
	Lock  *lockJSON `json:"lock"`

	lock lockmgr.Lock // the row the event is about (the last one seen when gone)
}

// diffSnapshots returns what changed from prev to cur among the locks whose
// name starts with prefix: first the names gone, then those added or
// renewed, each by name. A nil prev has no locks.
func diffSnapshots(prev, cur *snapshot, prefix string) []watchEvent {
	before := map[string]lockmgr.Lock{}
	if prev != nil {
		for _, l := range prev.Live(prefix) {
			before[l.Name] = l
		}
	}
	now := map[string]lockmgr.Lock{}
	for _, l := range cur.Live(prefix) {
		now[l.Name] = l
	}
	var gone, changed []watchEvent
	if prev != nil {
		for _, l := range prev.Live(prefix) {
			if _, ok := now[l.Name]; ok {
				continue
			}
			ev := evReleased
			if l.LockedUntil != nil && !l.LockedUntil.After(cur.Now) {
				ev = evExpired
			}
			gone = append(gone, newWatchEvent(ev, l, cur.Now))
		}
	}
	for _, l := range cur.Live(prefix) {
		old, ok := before[l.Name]
		switch {
		case !ok || old.Fence != l.Fence || old.Token != l.Token:
			changed = append(changed, newWatchEvent(evAdded, l, cur.Now))
		case !sameTime(old.LockedUntil, l.LockedUntil) || !old.UpdatedAt.Equal(l.UpdatedAt):
			changed = append(changed, newWatchEvent(evRenewed, l, cur.Now))
		}
	}
	return append(gone, changed...)
}

// newWatchEvent describes event about l, seen at now.
func newWatchEvent(event string, l lockmgr.Lock, now time.Time) watchEvent {
	return watchEvent{Event: event, Name: l.Name, At: now, Lock: newLockJSONAt(&l, now), lock: l}
}

// sameTime compares two optional times.
func sameTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

// watch runs list --watch: the live view on a terminal, or with --json the
// stream of changes. Both end on SIGINT or SIGTERM, with status 0.
func (a *app) watch(ctx context.Context, table string, o listOptions) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	poll := func(ctx context.Context) (*snapshot, error) { return readSnapshot(ctx, a.gdb, table, "") }
	if o.asJSON {
		return a.watchJSON(ctx, poll, o)
	}
	out, ok := a.stdout.(*os.File)
	if !ok || !isatty.IsTerminal(out.Fd()) && !isatty.IsCygwinTerminal(out.Fd()) {
		return errors.New("list --watch needs a terminal; add --json to stream the changes as lines")
	}
	m := newWatchModel(table, o.prefix, time.Duration(o.interval), poll)
	p := tea.NewProgram(m, tea.WithContext(ctx), tea.WithOutput(a.stdout), tea.WithInput(a.stdin), tea.WithoutSignalHandler())
	_, err := p.Run()
	if errors.Is(err, tea.ErrProgramKilled) && ctx.Err() != nil {
		return nil // a signal: as q does
	}
	return err
}

// watchJSON polls until ctx ends, printing each change as a line.
func (a *app) watchJSON(ctx context.Context, poll func(context.Context) (*snapshot, error), o listOptions) error {
	var prev *snapshot
	t := time.NewTicker(time.Duration(o.interval))
	defer t.Stop()
	for {
		cur, err := poll(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("watching locks: %w", err)
		}
		for _, ev := range diffSnapshots(prev, cur, o.prefix) {
			if err := writeJSON(a.stdout, ev); err != nil {
				return nil // the reader went away (jq ended, a closed pipe)
			}
		}
		prev = cur
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
