package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"
	"github.com/gormlock/lockmgr"
)

// watchModel is list --watch's Bubble Tea model: it polls the table every
// interval and draws the live locks, marking what changed since the poll
// before.
type watchModel struct {
	table, prefix string
	interval      time.Duration
	poll          func(context.Context) (*snapshot, error)

	snap  *snapshot
	marks map[string]mark // name: evAdded or evRenewed, and the poll that saw it
	gone  []goneLock      // released or expired lately
	err   error           // the last poll's, shown until one succeeds
	polls int
	width int
}

// mark is a change the view highlights, seen at poll number poll.
type mark struct {
	event string
	poll  int
}

// goneLock is a lock released or expired at poll number poll.
type goneLock struct {
	watchEvent
	poll int
}

// highlightFor is how long the view keeps a change highlighted, at least
// one poll: long enough for a person to see it.
const highlightFor = 3 * time.Second

// keepPolls is for how many polls a change stays highlighted.
func (m *watchModel) keepPolls() int {
	return max(1, int((highlightFor+m.interval-1)/m.interval))
}

// fresh reports whether a change seen at poll is still highlighted.
func (m *watchModel) fresh(poll int) bool { return m.polls-poll < m.keepPolls() }

// snapMsg carries a poll's result.
type snapMsg struct {
	snap *snapshot
	err  error
}

// tickMsg says it is time to poll again.
type tickMsg struct{}

// newWatchModel builds the model; poll reads the table.
func newWatchModel(table, prefix string, interval time.Duration, poll func(context.Context) (*snapshot, error)) *watchModel {
	return &watchModel{table: table, prefix: prefix, interval: interval, poll: poll, marks: map[string]mark{}}
}

// Init polls at once.
func (m *watchModel) Init() tea.Cmd { return m.pollCmd() }

// pollCmd reads the table, giving up after a few intervals.
func (m *watchModel) pollCmd() tea.Cmd {
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(context.Background(), max(5*m.interval, 10*time.Second))
		defer cancel()
		s, err := m.poll(ctx)
		return snapMsg{snap: s, err: err}
	}
}

// Update handles keys, polls and ticks.
func (m *watchModel) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.KeyPressMsg:
		switch msg.String() {
		case "q", "esc", "ctrl+c":
			return m, tea.Quit
		}
	case tea.WindowSizeMsg:
		m.width = msg.Width
	case tickMsg:
		return m, m.pollCmd()
	case snapMsg:
		m.apply(msg)
		return m, tea.Tick(m.interval, func(time.Time) tea.Msg { return tickMsg{} })
	}
	return m, nil
}

// apply takes in a poll's result: the marks are what changed since the
// previous snapshot (none on the first, which has nothing to compare with),
// kept for keepPolls polls.
func (m *watchModel) apply(msg snapMsg) {
	m.err = msg.err
	if msg.err != nil {
		return
	}
	m.polls++
	if m.snap != nil {
		for _, ev := range diffSnapshots(m.snap, msg.snap, m.prefix) {
			switch ev.Event {
			case evAdded, evRenewed:
				m.marks[ev.Name] = mark{ev.Event, m.polls}
			default:
				delete(m.marks, ev.Name)
				m.gone = append(m.gone, goneLock{ev, m.polls})
			}
		}
	}
	m.snap = msg.snap
	m.forget()
}

// forget drops the marks no longer fresh, and the gone locks that are no
// longer fresh or are back.
func (m *watchModel) forget() {
	for name, mk := range m.marks {
		if !m.fresh(mk.poll) {
			delete(m.marks, name)
		}
	}
	live := map[string]bool{}
	for _, l := range m.snap.Live(m.prefix) {
		live[l.Name] = true
	}
	kept := m.gone[:0]
	for _, g := range m.gone {
		if m.fresh(g.poll) && !live[g.Name] {
			kept = append(kept, g)
		}
	}
	m.gone = kept
}

// The live view's colours. Lip Gloss v2 renders them in full and Bubble
// Tea brings them down to what the terminal shows.
var (
	styleTitle    = lipgloss.NewStyle().Bold(true)
	styleHeader   = lipgloss.NewStyle().Bold(true).Underline(true)
	stylePlain    = lipgloss.NewStyle()
	styleAdded    = lipgloss.NewStyle().Foreground(lipgloss.Green).Bold(true)
	styleRenewed  = lipgloss.NewStyle().Foreground(lipgloss.Cyan)
	styleExpiring = lipgloss.NewStyle().Foreground(lipgloss.Yellow).Bold(true)
	styleGone     = lipgloss.NewStyle().Foreground(lipgloss.Red).Strikethrough(true)
	styleFailed   = lipgloss.NewStyle().Foreground(lipgloss.Red)
	styleDim      = lipgloss.NewStyle().Faint(true)
)

// watchCols is the table's layout: NAME HOLDER PID FENCE HELD LEFT STATUS.
const watchCols = "%-28s %-20s %7s %16s %9s %14s  %s"

// View is the live view, on the terminal's alternate screen.
func (m *watchModel) View() tea.View {
	v := tea.NewView(m.render())
	v.AltScreen = true
	return v
}

// render draws the header, the locks and what just went.
func (m *watchModel) render() string {
	var b strings.Builder
	title := fmt.Sprintf("lockmgr list --watch: table %q", m.table)
	if m.prefix != "" {
		title += fmt.Sprintf(", names starting with %q", m.prefix)
	}
	b.WriteString(styleTitle.Render(title) + "\n")
	if m.snap == nil {
		b.WriteString(m.errLine() + "reading the table...\n")
		return b.String()
	}
	live := m.snap.Live(m.prefix)
	fmt.Fprintf(&b, "%d live, database clock %s, every %s; q quits\n%s", len(live), lockmgr.FormatTime(&m.snap.Now), m.interval, m.errLine())
	b.WriteString(styleHeader.Render(fmt.Sprintf(watchCols, "NAME", "HOLDER", "PID", "FENCE", "HELD", "LEFT", "STATUS")) + "\n")
	for i := range live {
		b.WriteString(m.row(&live[i]) + "\n")
	}
	for _, ev := range m.gone {
		line := m.cells(&ev.lock, "-", strings.ToUpper(ev.Event))
		b.WriteString(styleGone.Render(line) + "\n")
	}
	if len(live) == 0 && len(m.gone) == 0 {
		b.WriteString(styleDim.Render("no live locks") + "\n")
	}
	return b.String()
}

// errLine shows the last poll's error, if any.
func (m *watchModel) errLine() string {
	if m.err == nil {
		return ""
	}
	return styleFailed.Render("poll failed (retrying): "+oneLine(m.err)) + "\n"
}

// row draws one live lock, styled by what happened to it.
func (m *watchModel) row(l *lockmgr.Lock) string {
	status, style := "", stylePlain
	switch {
	case m.marks[l.Name].event == evAdded:
		status, style = "NEW", styleAdded
	case m.expiring(l):
		status, style = "EXPIRING", styleExpiring
	case m.marks[l.Name].event == evRenewed:
		status, style = "RENEWED", styleRenewed
	}
	return style.Render(m.cells(l, strings.TrimPrefix(leftTextAt(l, m.snap.Now), "expires in "), status))
}

// cells lays out one lock's columns.
func (m *watchModel) cells(l *lockmgr.Lock, left, status string) string {
	pid := "-"
	if l.LockProcess != nil {
		pid = fmt.Sprint(*l.LockProcess)
	}
	return fmt.Sprintf(watchCols, clip(l.Name, 28), clip(l.LockedBy, 20), pid,
		fmt.Sprint(l.Fence), roundDur(m.snap.Now.Sub(l.CreatedAt)), left, status)
}

// expiring reports whether l has less than a third of its term (since its
// last write) left: lockmgr's keep-alive renews at every third, so such a
// holder has missed a renewal, or never renews, and will lose it soon.
func (m *watchModel) expiring(l *lockmgr.Lock) bool {
	if l.LockedUntil == nil {
		return false
	}
	left, term := l.LockedUntil.Sub(m.snap.Now), l.LockedUntil.Sub(l.UpdatedAt)
	return left < term/3
}

// clip shortens s to n runes, marking the cut.
func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
