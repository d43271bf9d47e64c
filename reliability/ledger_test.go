package reliability

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// ledger is the in-process occupancy checker of the fault tests: a hold
// begins when an acquisition returns and ends when the holder releases
// or learns that it lost the lock (its scope's context is cancelled).
// A begin while another hold of the name is open is an overlap.
type ledger struct {
	mu       sync.Mutex
	open     map[string]*ledgerHold
	holds    int
	lost     int
	overlaps []string
}

type ledgerHold struct {
	name, who    string
	fence        int64
	start, ended time.Time
	lost         bool
}

func newLedger() *ledger { return &ledger{open: map[string]*ledgerHold{}} }

// begin opens a hold of name by who, recording an overlap if one is open.
func (l *ledger) begin(name, who string, fence int64) *ledgerHold {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := &ledgerHold{name: name, who: who, fence: fence, start: time.Now()}
	if cur := l.open[name]; cur != nil {
		l.overlaps = append(l.overlaps, fmt.Sprintf("%s took %q (fence %d) while %s (fence %d, since %s) still held it",
			who, name, fence, cur.who, cur.fence, cur.start.Format("15:04:05.000000")))
	}
	l.open[name] = h
	l.holds++
	return h
}

// end closes h once; lost says the holder learned it lost the lock.
func (l *ledger) end(h *ledgerHold, lost bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !h.ended.IsZero() {
		return
	}
	h.ended, h.lost = time.Now(), lost
	if lost {
		l.lost++
	}
	if l.open[h.name] == h {
		delete(l.open, h.name)
	}
}

// watch closes h as lost when scope is cancelled; the returned func
// closes it as released instead, if the scope was not lost before.
func (l *ledger) watch(h *ledgerHold, scope context.Context) (release func()) {
	stop := context.AfterFunc(scope, func() { l.end(h, true) })
	return func() {
		if stop() {
			l.end(h, false)
		}
	}
}

func (l *ledger) snapshot() (holds, lost int, overlaps []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.holds, l.lost, append([]string(nil), l.overlaps...)
}

// state returns when h ended (zero while open) and whether it was lost.
func (l *ledger) state(h *ledgerHold) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return h.ended, h.lost
}
