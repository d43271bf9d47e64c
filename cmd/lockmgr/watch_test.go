package main

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gormlock/lockmgr"
)

// t0 is the database clock of the model tests' first poll.
var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// testLock is a lock taken at taken, fenced fence, expiring at until (nil: never).
func testLock(name string, fence int64, taken time.Time, until *time.Time) lockmgr.Lock {
	return lockmgr.Lock{Name: name, LockedBy: "web1", Fence: fence, Token: "tok" + name + string(rune('0'+fence%10)),
		CreatedAt: taken, UpdatedAt: taken, LockedUntil: until}
}

// at is t0 + d, as a pointer.
func at(d time.Duration) *time.Time { t := t0.Add(d); return &t }

func TestDiffSnapshots(t *testing.T) {
	t.Parallel()
	a := testLock("a", 1, t0, at(time.Minute))
	b := testLock("b", 2, t0, at(time.Minute))
	c := testLock("c", 3, t0, at(10*time.Second))
	d := testLock("d", 4, t0, at(time.Minute))
	other := testLock("x:1", 5, t0, nil)
	prev := &snapshot{Now: t0, Rows: []lockmgr.Lock{a, b, c, d, other}}

	renewedB := b
	renewedB.LockedUntil, renewedB.UpdatedAt = at(2*time.Minute), t0.Add(30*time.Second)
	takenD := testLock("d", 9, t0.Add(20*time.Second), at(time.Minute))
	e := testLock("e", 10, t0.Add(20*time.Second), nil)
	cur := &snapshot{Now: t0.Add(30 * time.Second), Rows: []lockmgr.Lock{renewedB, c, takenD, e, other}} // a gone; c expired (row stays)

	var got []string
	for _, ev := range diffSnapshots(prev, cur, "") {
		got = append(got, ev.Event+" "+ev.Name)
		assert.Equal(t, cur.Now, ev.At)
		require.NotNil(t, ev.Lock)
		assert.Equal(t, ev.Name, ev.Lock.Name)
	}
	assert.Equal(t, []string{"released a", "expired c", "renewed b", "added d", "added e"}, got)

	first := diffSnapshots(nil, prev, "")
	assert.Len(t, first, 5, "every live lock is added at the first poll")
	for _, ev := range first {
		assert.Equal(t, evAdded, ev.Event)
	}
	onlyX := diffSnapshots(prev, cur, "x:")
	assert.Empty(t, onlyX, "x:1 did not change; the prefix hides the rest")
	assert.Len(t, diffSnapshots(nil, cur, "x:"), 1)
}

// update feeds msg to m and returns the command it gave back.
func update(t *testing.T, m *watchModel, msg tea.Msg) tea.Cmd {
	t.Helper()
	next, cmd := m.Update(msg)
	require.Same(t, m, next)
	return cmd
}

// screenLine is the plain text of the view's line about name.
func screenLine(t *testing.T, view, name string) string {
	t.Helper()
	for _, line := range strings.Split(view, "\n") {
		if plain := ansi.Strip(line); strings.HasPrefix(plain, name+" ") {
			return line
		}
	}
	t.Fatalf("no line for %q in\n%s", name, ansi.Strip(view))
	return ""
}

func TestWatchModel(t *testing.T) {
	t.Parallel()
	m := newWatchModel("lockmgr_lock", "", highlightFor, nil) // changes stay marked for one poll
	assert.Contains(t, m.render(), "reading the table...")
	a := testLock("a", 1, t0, at(time.Minute))
	b := testLock("b", 2, t0, at(time.Minute))
	c := testLock("c", 3, t0, at(time.Minute))
	cmd := update(t, m, snapMsg{snap: &snapshot{Now: t0, Rows: []lockmgr.Lock{a, b, c}}})
	require.NotNil(t, cmd, "a tick for the next poll")
	view := m.render()
	assert.Contains(t, ansi.Strip(view), "3 live, database clock 2025-06-01 12:00:00+00:00, every 3s; q quits")
	assert.NotContains(t, ansi.Strip(view), "NEW", "the first poll has nothing to compare with")

	renewedA := a
	renewedA.LockedUntil, renewedA.UpdatedAt = at(3*time.Minute), t0.Add(50*time.Second)
	d := testLock("d", 4, t0.Add(50*time.Second), at(2*time.Minute))
	update(t, m, snapMsg{snap: &snapshot{Now: t0.Add(55 * time.Second), Rows: []lockmgr.Lock{renewedA, c, d}}}) // b released; c has 5 s left
	view = m.render()
	for name, status := range map[string]string{"a": "RENEWED", "c": "EXPIRING", "d": "NEW", "b": "RELEASED"} {
		line := screenLine(t, view, name)
		assert.True(t, strings.HasSuffix(ansi.Strip(line), status), "%s: %q", name, ansi.Strip(line))
		assert.NotEqual(t, line, ansi.Strip(line), "%s is highlighted", name)
	}
	assert.Contains(t, ansi.Strip(screenLine(t, view, "d")), " 1m5s ", "d's time left")
	assert.Contains(t, ansi.Strip(screenLine(t, view, "a")), " 55s ", "a held since t0")
	assert.Contains(t, ansi.Strip(view), "3 live,")

	assertWatchRecovers(t, m, renewedA, d)
	quit := update(t, m, tea.KeyPressMsg{Code: 'q', Text: "q"})
	require.NotNil(t, quit)
	assert.IsType(t, tea.QuitMsg{}, quit())
}

// assertWatchRecovers: a failed poll keeps the screen and says so; the
// next one clears it, and what went is shown no longer.
func assertWatchRecovers(t *testing.T, m *watchModel, a, d lockmgr.Lock) {
	t.Helper()
	update(t, m, snapMsg{err: errors.New("connection refused")})
	assert.Contains(t, ansi.Strip(m.render()), "poll failed (retrying): connection refused")
	assert.Contains(t, ansi.Strip(m.render()), "RELEASED", "the last snapshot stays on screen")
	update(t, m, snapMsg{snap: &snapshot{Now: t0.Add(70 * time.Second), Rows: []lockmgr.Lock{a, d}}})
	view := ansi.Strip(m.render())
	assert.NotContains(t, view, "poll failed")
	assert.NotContains(t, view, "RELEASED", "what went is shown for one poll")
	assert.Contains(t, screenLine(t, view, "c"), "EXPIRED")
	assert.True(t, m.View().AltScreen)

	require.NotNil(t, update(t, m, snapMsg{snap: &snapshot{Now: t0.Add(71 * time.Second)}}), "the next tick")
	assert.Contains(t, ansi.Strip(m.render()), "0 live,")
	update(t, m, snapMsg{snap: &snapshot{Now: t0.Add(72 * time.Second)}})
	assert.Contains(t, ansi.Strip(m.render()), "no live locks")
}

// TestWatchModelKeepsHighlights: at a short interval a change stays
// marked for highlightFor, not just one poll, so a person can see it.
func TestWatchModelKeepsHighlights(t *testing.T) {
	t.Parallel()
	m := newWatchModel("lockmgr_lock", "", time.Second, nil)
	a := testLock("a", 1, t0, at(time.Hour))
	b := testLock("b", 2, t0, at(time.Hour))
	update(t, m, snapMsg{snap: &snapshot{Now: t0, Rows: []lockmgr.Lock{a}}})
	update(t, m, snapMsg{snap: &snapshot{Now: t0.Add(time.Second), Rows: []lockmgr.Lock{b}}}) // a released, b new
	for i := 2; i <= 5; i++ {                                                                 // marked at polls 2, 3 and 4: 3 s
		view := ansi.Strip(m.render())
		if i < 5 {
			assert.True(t, strings.HasSuffix(screenLine(t, view, "b"), "NEW"), "poll %d", i)
			assert.Contains(t, view, "RELEASED", "poll %d", i)
		} else {
			assert.False(t, strings.HasSuffix(screenLine(t, view, "b"), "NEW"), "after %s", highlightFor)
			assert.NotContains(t, view, "RELEASED", "after %s", highlightFor)
		}
		update(t, m, snapMsg{snap: &snapshot{Now: t0.Add(time.Duration(i) * time.Second), Rows: []lockmgr.Lock{b}}})
	}
	update(t, m, snapMsg{snap: &snapshot{Now: t0.Add(5 * time.Second), Rows: []lockmgr.Lock{b}}})
	assert.NotContains(t, ansi.Strip(m.render()), "NEW")
}

func TestWatchModelPrefix(t *testing.T) {
	t.Parallel()
	m := newWatchModel("lockmgr_lock", "invoice:", time.Second, nil)
	update(t, m, snapMsg{snap: &snapshot{Now: t0, Rows: []lockmgr.Lock{testLock("deploy", 1, t0, nil), testLock("invoice:7", 2, t0, nil)}}})
	view := ansi.Strip(m.render())
	assert.Contains(t, view, `names starting with "invoice:"`)
	assert.Contains(t, view, "invoice:7")
	assert.NotContains(t, view, "deploy")
	assert.Contains(t, view, "1 live,")
}

func TestWatchNeedsATerminal(t *testing.T) {
	eachDB(t, func(t *testing.T, c *cli) {
		r := c.run("list", "--watch")
		assert.Equal(t, exitFailure, r.code)
		assert.Equal(t, "lockmgr: list --watch needs a terminal; add --json to stream the changes as lines\n", r.stderr)
		r = c.run("list", "--watch", "--interval", "10ms")
		assert.Equal(t, exitUsage, r.code, r.stderr)
	})
}

// nextEvent reads p's JSON lines until one about name, and returns it.
func (p *proc) nextEvent(name string) watchEvent {
	p.t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case line := <-p.lines:
			var ev watchEvent
			require.NoError(p.t, json.Unmarshal([]byte(line), &ev), "line %q", line)
			if ev.Name == name {
				return ev
			}
		case <-p.done:
			p.t.Fatalf("lockmgr exited with %d; stdout %q, stderr %q", p.code, p.stdout(), p.stderr.String())
		case <-timeout:
			p.t.Fatalf("no event about %q in 30s; stdout %q", name, p.stdout())
		}
	}
}

func TestWatchJSONStream(t *testing.T) {
	eachDB(t, func(t *testing.T, c *cli) {
		c.ok("set", "old", "-t", "60")
		p := c.start("list", "--watch", "--json", "--interval", "200ms", "--prefix", "job:")
		c.ok("set", "job:a", "-t", "60", "--locked-by", "w1")
		ev := p.nextEvent("job:a")
		assert.Equal(t, evAdded, ev.Event)
		require.NotNil(t, ev.Lock)
		assert.Equal(t, "w1", ev.Lock.LockedBy)
		fence := ev.Lock.Fence
		c.ok("set", "job:a", "-t", "120")
		ev = p.nextEvent("job:a")
		assert.Equal(t, evRenewed, ev.Event)
		assert.Equal(t, fence, ev.Lock.Fence, "the same term")
		c.ok("clear", "job:a")
		assert.Equal(t, evReleased, p.nextEvent("job:a").Event)
		c.ok("set", "job:b", "-t", "1")
		assert.Equal(t, evAdded, p.nextEvent("job:b").Event)
		assert.Equal(t, evExpired, p.nextEvent("job:b").Event)
		require.NoError(t, p.cmd.Process.Signal(os.Interrupt))
		assert.Equal(t, 0, p.wait(10*time.Second), "stderr %q", p.stderr.String())
		assert.NotContains(t, p.stdout(), `"old"`, "--prefix")
	})
}
