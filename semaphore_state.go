package lockmgr

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// semaphoreState is what one read of a semaphore's rows found.
type semaphoreState struct {
	held   map[int]Lock // live slots, by index
	marker *Lock        // the live marker row, or nil
}

// semaphoreState reads the live marker and slots 0..n-1 of the semaphore
// name in one statement (dialect.semaphore): each row found through the
// primary key, so its cost grows with n, not with the table.
func (m *Manager) semaphoreState(ctx context.Context, name string, n int) (semaphoreState, error) {
	var v values
	m.d.fill(&v, 0)
	v[aName], v[aSlots], v[aMarker] = name, n, semaphoreMarker(name)
	st := semaphoreState{held: make(map[int]Lock, n)}
	err := m.run(ctx, func() error {
		clear(st.held)
		st.marker = nil
		rows, err := m.rows(ctx, m.d.semaphore, &v)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			l, err := scanLock(rows)
			if err != nil {
				return err
			}
			if sem, i, ok := SemaphoreOf(l.Name); ok && sem == name && i < 0 {
				st.marker = l
			} else if ok && sem == name && i < n {
				st.held[i] = *l
			}
		}
		return rows.Err()
	})
	if err != nil {
		return st, fmt.Errorf("lockmgr: semaphore %q: %w", name, err)
	}
	return st, nil
}

// semaphoreFree reads, in one statement (dialect.semaphoreFree), the
// live marker's locked_by (marked: there is one) and up to
// semaphoreCandidates free slots of the semaphore name of n, in random
// order: the database looks each slot up through the primary key, and
// returns only what the acquisition needs.
func (m *Manager) semaphoreFree(ctx context.Context, name string, n int) (free []int, by string, marked bool, err error) {
	var v values
	m.d.fill(&v, 0)
	v[aName], v[aSlots], v[aMarker], v[aLimit] = name, n, semaphoreMarker(name), semaphoreCandidates
	err = m.run(ctx, func() error {
		free, by, marked = free[:0], "", false
		rows, err := m.rows(ctx, m.d.semaphoreFree, &v)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var i int
			var s string
			if err := rows.Scan(&i, &s); err != nil {
				return err
			}
			if i < 0 {
				by, marked = s, true
			} else if i < n {
				free = append(free, i)
			}
		}
		return rows.Err()
	})
	if err != nil {
		return nil, "", false, fmt.Errorf("lockmgr: semaphore %q: %w", name, err)
	}
	return free, by, marked, nil
}

// checkSize compares the size the marker records (by, if marked) with
// s.n, writing the marker first if there is none. Of racing writers of
// the marker (one GetLock) one wins; the others read its size.
func (s *Semaphore) checkSize(ctx context.Context, by string, marked bool) error {
	if !marked {
		_, err := s.m.GetLock(ctx, s.marker, NoExpiry(), LockedBy(markerText(s.n)), Process(0))
		if err == nil {
			return nil
		}
		if !errors.Is(err, ErrLocked) {
			return fmt.Errorf("lockmgr: semaphore %q: writing its marker: %w", s.name, err)
		}
		marker, err := s.m.Get(ctx, s.marker)
		if errors.Is(err, ErrLockNotFound) {
			// GetLock found the table busy (SQLite's write lock, a row
			// another transaction holds): another writer, not a marker yet.
			return fmt.Errorf("%w: semaphore %q: its marker is being written", ErrLocked, s.name)
		} else if err != nil {
			return fmt.Errorf("lockmgr: semaphore %q: reading its marker: %w", s.name, err)
		}
		by = marker.LockedBy
	}
	n, ok := parseMarker(by)
	switch {
	case !ok:
		return fmt.Errorf("%w: semaphore %q: lock %q, held by %q, is not a semaphore's marker",
			ErrSemaphoreSize, s.name, s.marker, by)
	case n != s.n:
		return fmt.Errorf("%w: semaphore %q has %d slots (its marker %q says so); this process asks for %d: "+
			"every process must use one size (to change it, see docs/semaphores.md)", ErrSemaphoreSize, s.name, n, s.marker, s.n)
	}
	return nil
}

// markerPrefix starts the locked_by of a semaphore's marker row, which
// ends with the size: "lockmgr semaphore of 3".
const markerPrefix = "lockmgr semaphore of "

func markerText(n int) string { return markerPrefix + strconv.Itoa(n) }

func parseMarker(by string) (int, bool) {
	rest, ok := strings.CutPrefix(by, markerPrefix)
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	return n, err == nil && n >= 1 && n <= MaxSemaphoreSize && strconv.Itoa(n) == rest
}

// SemaphoreSize is the size a semaphore's marker row records (its
// LockedBy reads "lockmgr semaphore of <n>"); ok is false for any other
// lock.
func SemaphoreSize(marker *Lock) (n int, ok bool) {
	if marker == nil {
		return 0, false
	}
	if _, slot, isRow := SemaphoreOf(marker.Name); !isRow || slot != -1 {
		return 0, false
	}
	return parseMarker(marker.LockedBy)
}

// SemaphoreOf reports whether a lock name is a semaphore's row: a slot
// "<semaphore>#<i>" (slot i, 0 ≤ i < MaxSemaphoreSize, in decimal without
// leading zeros) or the marker "<semaphore>#size" (slot -1). A plain lock
// given such a name takes that slot, which only leaves the semaphore fewer
// free slots.
func SemaphoreOf(name string) (semaphore string, slot int, ok bool) {
	j := strings.LastIndexByte(name, '#')
	if j <= 0 {
		return "", 0, false
	}
	semaphore, suffix := name[:j], name[j+1:]
	if suffix == "size" {
		return semaphore, -1, true
	}
	i, err := strconv.Atoi(suffix)
	if err != nil || i < 0 || i >= MaxSemaphoreSize || strconv.Itoa(i) != suffix {
		return "", 0, false
	}
	return semaphore, i, true
}

// ClearSemaphore deletes the semaphore name's live slots and its marker,
// whoever holds them (Unlock, name by name), and returns how many rows it
// deleted. Holders in a Scope see their slot lost; holders without one
// find out at their next Renew or Release (ErrNotHeld). The next
// acquisition writes the marker again with its own size: this is how a
// drained semaphore's size is changed (docs/semaphores.md).
func (m *Manager) ClearSemaphore(ctx context.Context, name string) (int, error) {
	if err := checkContext(ctx); err != nil {
		return 0, err
	}
	if _, err := NewSemaphore(m, name, 1); err != nil {
		return 0, err
	}
	st, err := m.semaphoreState(ctx, name, MaxSemaphoreSize)
	if err != nil {
		return 0, err
	}
	names := make([]string, 0, len(st.held)+1)
	for _, l := range st.held {
		names = append(names, l.Name)
	}
	if st.marker != nil {
		names = append(names, st.marker.Name)
	}
	for i, n := range names {
		if err := m.Unlock(ctx, n); err != nil {
			return i, err
		}
	}
	return len(names), nil
}

// wait retries attempt until d has passed or ctx ends, sleeping with
// jittered backoff and waking early when any slot is released, in this
// process or (through the Manager's Notifier) in another. It makes its
// last attempt at the deadline, never after it.
func (s *Semaphore) wait(ctx context.Context, d time.Duration, take func(slot string) error) (err error) {
	deadline := time.Now().Add(d)
	w := &waiter{wake: make(chan struct{}, 1)}
	for _, slot := range s.slots {
		defer s.m.subscribe(slot, w)()
	}
	defer func() {
		if err != nil && len(w.wake) > 0 { // pass on a wake-up not used
			wakeLocal(s.m.dbID, s.m.tableName, s.slots[0])
		}
	}()
	s.m.checkNotifier(ctx)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for step := waitMin; ; {
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("%w: semaphore %q: all %d slots are held", ErrLocked, s.name, s.n)
		}
		timer.Reset(min(jitter(step), left))
		select {
		case <-ctx.Done():
			return errors.Join(fmt.Errorf("%w: semaphore %q", ErrLocked, s.name), context.Cause(ctx))
		case <-w.wake:
			step = waitMin
		case <-timer.C:
			step = min(2*step, waitMax)
		}
		err = s.attempt(ctx, take)
		if err != nil && ctx.Err() != nil {
			return errors.Join(fmt.Errorf("%w: semaphore %q", ErrLocked, s.name), context.Cause(ctx))
		}
		if !errors.Is(err, ErrLocked) {
			return err
		}
	}
}
