package lockmgr

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestWakeOneWakesTheFirstWaiterWithoutAWakeUp: a release wakes one waiter,
// the one that has waited longest; a second release before it took its
// wake-up goes to the next; a waiter that leaves is out of the queue.
func TestWakeOneWakesTheFirstWaiterWithoutAWakeUp(t *testing.T) {
	ws := &waiters{queues: map[waitKey][]*waiter{}}
	w := make([]*waiter, 3)
	stops := make([]func(), 3)
	for i := range w {
		w[i] = &waiter{wake: make(chan struct{}, 1)}
		stops[i] = ws.subscribe(nil, "t", "a", w[i])
	}
	other := &waiter{wake: make(chan struct{}, 1)}
	defer ws.subscribe(nil, "t", "b", other)()

	pending := func() []int {
		var n []int
		for _, x := range w {
			n = append(n, len(x.wake))
		}
		return n
	}
	ws.wakeOne(nil, "t", "a")
	assert.Equal(t, []int{1, 0, 0}, pending(), "one release wakes the first waiter only")
	ws.wakeOne(nil, "t", "a")
	assert.Equal(t, []int{1, 1, 0}, pending(), "the next release goes to the next waiter")
	<-w[0].wake
	ws.wakeOne(nil, "t", "a")
	assert.Equal(t, []int{1, 1, 0}, pending(), "the first waiter, its wake-up taken, is first again")
	assert.Empty(t, other.wake, "other names are not woken")

	stops[0]()
	stops[1]()
	<-w[1].wake
	ws.wakeOne(nil, "t", "a")
	assert.Equal(t, 1, len(w[2].wake), "a waiter that left is out of the queue")
	stops[2]()
	stops[2]() // stopping twice is harmless
	assert.NotContains(t, ws.queues, waitKey{nil, "t", "a"}, "an empty queue is dropped")
	ws.wakeOne(nil, "t", "a") // nobody waits: nothing happens
}

func TestParseNotice(t *testing.T) {
	h := newHandle()
	mine := originOf(h)
	assert.Equal(t, mine, originOf(h), "one mark per database handle")
	assert.Len(t, mine, originLen)
	name, own := parseNotice(mine+"job", mine)
	assert.Equal(t, "job", name)
	assert.True(t, own, "this handle's own notice")
	other := originOf(newHandle())
	assert.NotEqual(t, mine, other)
	name, own = parseNotice(other+"\x1ejob", mine)
	assert.Equal(t, "\x1ejob", name, "another handle's notice; the name is kept byte for byte")
	assert.False(t, own)
	name, own = parseNotice("job", mine)
	assert.Equal(t, "job", name, "a bare name, as pg_notify sent by hand")
	assert.False(t, own)
	name, own = parseNotice(mine, mine)
	assert.Equal(t, mine, name, "too short to carry a name: a bare name")
	assert.False(t, own)
}

// TestWakeOneKeepsDatabasesApart: a release on one database handle wakes
// a waiter of the same table and name on that handle, not one on another.
func TestWakeOneKeepsDatabasesApart(t *testing.T) {
	ws := &waiters{queues: map[waitKey][]*waiter{}}
	x, y := &waiter{wake: make(chan struct{}, 1)}, &waiter{wake: make(chan struct{}, 1)}
	dbX, dbY := new(int), new(int)
	defer ws.subscribe(dbX, "t", "a", x)()
	defer ws.subscribe(dbY, "t", "a", y)()
	ws.wakeOne(dbY, "t", "a")
	assert.Empty(t, x.wake, "the first waiter in time, on another database, is left asleep")
	assert.Len(t, y.wake, 1)
}
