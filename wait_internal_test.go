package lockmgr

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestWakeOneWakesTheFirstWaiterWithoutAWakeUp: a release wakes one waiter,
// the one that has waited longest; a second release before it took its
// wake-up goes to the next; a waiter that leaves is out of the queue.
func TestWakeOneWakesTheFirstWaiterWithoutAWakeUp(t *testing.T) {
	ws := &waiters{queues: map[string][]*waiter{}}
	w := make([]*waiter, 3)
	stops := make([]func(), 3)
	for i := range w {
		w[i] = &waiter{wake: make(chan struct{}, 1)}
		stops[i] = ws.subscribe("t", "a", w[i])
	}
	other := &waiter{wake: make(chan struct{}, 1)}
	defer ws.subscribe("t", "b", other)()

	pending := func() []int {
		var n []int
		for _, x := range w {
			n = append(n, len(x.wake))
		}
		return n
	}
	ws.wakeOne("t", "a")
	assert.Equal(t, []int{1, 0, 0}, pending(), "one release wakes the first waiter only")
	ws.wakeOne("t", "a")
	assert.Equal(t, []int{1, 1, 0}, pending(), "the next release goes to the next waiter")
	<-w[0].wake
	ws.wakeOne("t", "a")
	assert.Equal(t, []int{1, 1, 0}, pending(), "the first waiter, its wake-up taken, is first again")
	assert.Empty(t, other.wake, "other names are not woken")

	stops[0]()
	stops[1]()
	<-w[1].wake
	ws.wakeOne("t", "a")
	assert.Equal(t, 1, len(w[2].wake), "a waiter that left is out of the queue")
	stops[2]()
	stops[2]() // stopping twice is harmless
	assert.NotContains(t, ws.queues, waitKey("t", "a"), "an empty queue is dropped")
	ws.wakeOne("t", "a") // nobody waits: nothing happens
}

func TestParseNotice(t *testing.T) {
	name, own := parseNotice(noticeOrigin + "job")
	assert.Equal(t, "job", name)
	assert.True(t, own, "this process's own notice")
	other := "\x1e0123456789abcdef\x1e"
	name, own = parseNotice(other + "\x1ejob")
	assert.Equal(t, "\x1ejob", name, "another process's notice; the name is kept byte for byte")
	assert.False(t, own)
	name, own = parseNotice("job")
	assert.Equal(t, "job", name, "a bare name, as pg_notify sent by hand")
	assert.False(t, own)
	name, own = parseNotice(noticeOrigin)
	assert.Equal(t, noticeOrigin, name, "too short to carry a name: a bare name")
	assert.False(t, own)
}
