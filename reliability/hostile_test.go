package reliability

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/gormlock/lockmgr"
)

// guard runs fn and turns a panic into an error, so a hostile input that
// panics fails its case instead of the whole run.
func guard(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("PANIC: %v", r)
		}
	}()
	return fn()
}

// rowSnap is what "nothing was written" compares: every row of a table.
func rowSnap(t *testing.T, db *gorm.DB, table string) []string {
	t.Helper()
	var rows []lockmgr.Lock
	require.NoError(t, db.Table(table).Find(&rows).Error)
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = fmt.Sprintf("%q %s %d %v", r.Name, r.Token, r.Fence, r.LockedUntil)
	}
	sort.Strings(out)
	return out
}

// hostileEnv is one database's Manager and table for the hostile inputs.
type hostileEnv struct {
	db    *gorm.DB
	m     *lockmgr.Manager
	table string
	tried int
}

// refuse checks that fn fails with want and leaves the table as it was.
func (e *hostileEnv) refuse(t *testing.T, what string, want error, fn func() error) {
	t.Helper()
	e.tried++
	before := rowSnap(t, e.db, e.table)
	err := guard(fn)
	assert.ErrorIs(t, err, want, what)
	assert.Equal(t, before, rowSnap(t, e.db, e.table), "%s wrote to the table", what)
}

// TestHostileInput feeds every database a table of hostile inputs. Each
// gets a clear error or a correct result; none panics or half-writes.
func TestHostileInput(t *testing.T) {
	forEachDB(t, func(t *testing.T, tg target) {
		db := mustOpen(t, tg)
		table := tableName("lock")
		e := &hostileEnv{db: db, m: newManager(t, db, table), table: table}
		t.Run("valid names round-trip", func(t *testing.T) { hostileValidNames(t, e) })
		t.Run("invalid names", func(t *testing.T) { hostileInvalidNames(t, e) })
		t.Run("durations", func(t *testing.T) { hostileDurations(t, e) })
		t.Run("locks", func(t *testing.T) { hostileLocks(t, e) })
		t.Run("setlock", func(t *testing.T) { hostileSetLock(t, e) })
		t.Run("manager options", func(t *testing.T) { hostileManagerOptions(t, e) })
		report(t, "hostile", map[string]any{"db": tg.Name, "inputs_tried": e.tried})
	})
}

// hostileValidNames takes every valid name at once (a collision between
// neighbours such as "a" and "a " would refuse one), lists them back byte
// for byte, and releases them.
func hostileValidNames(t *testing.T, e *hostileEnv) {
	ctx := context.Background()
	locks := map[string]*lockmgr.Lock{}
	for _, name := range validNames {
		e.tried++
		var l *lockmgr.Lock
		err := guard(func() (err error) { l, err = e.m.GetLock(ctx, name, lockmgr.Expires(time.Minute)); return })
		if assert.NoError(t, err, "GetLock(%q)", name) {
			assert.Equal(t, name, l.Name)
			locks[name] = l
		}
	}
	list, err := e.m.List(ctx)
	require.NoError(t, err)
	got := make([]string, 0, len(list))
	for _, l := range list {
		got = append(got, l.Name)
	}
	want := append([]string(nil), validNames...)
	sort.Strings(want)
	assert.Equal(t, want, got, "List is not the names taken, byte for byte, in byte order")
	for _, name := range validNames {
		held, err := e.m.IsLocked(ctx, name)
		assert.NoError(t, err)
		assert.True(t, held, "IsLocked(%q)", name)
		_, err = e.m.GetLock(ctx, name)
		assert.ErrorIs(t, err, lockmgr.ErrLocked, "second GetLock(%q)", name)
	}
	for name, l := range locks {
		assert.NoError(t, e.m.Release(ctx, l), "Release(%q)", name)
	}
	assert.Empty(t, rowSnap(t, e.db, e.table))
	for _, name := range validNames { // the other ways in take them too
		e.tried++
		err := guard(func() error {
			return e.m.Do(ctx, name, func(context.Context, *lockmgr.Scope) error { return nil }, lockmgr.Expires(time.Minute))
		})
		assert.NoError(t, err, "Do(%q)", name)
		assert.NoError(t, guard(func() error { return e.m.Unlock(ctx, name) }), "Unlock(%q)", name)
	}
	assert.Empty(t, rowSnap(t, e.db, e.table))
}

// hostileInvalidNames passes every invalid name to every call that takes
// a name.
func hostileInvalidNames(t *testing.T, e *hostileEnv) {
	ctx := context.Background()
	held, err := e.m.GetLock(ctx, "bystander", lockmgr.Expires(time.Minute))
	require.NoError(t, err)
	for _, name := range invalidNames {
		calls := map[string]func() error{
			"GetLock":   func() error { _, err := e.m.GetLock(ctx, name); return err },
			"IsLocked":  func() error { _, err := e.m.IsLocked(ctx, name); return err },
			"Unlock":    func() error { return e.m.Unlock(ctx, name) },
			"RenewLock": func() error { _, err := e.m.RenewLock(ctx, name, lockmgr.Create()); return err },
			"Acquire":   func() error { _, err := e.m.Acquire(ctx, name); return err },
			"Do": func() error {
				return e.m.Do(ctx, name, func(context.Context, *lockmgr.Scope) error { return nil })
			},
			"SetLock": func() error { _, err := e.m.SetLock(ctx, []string{"ok-1", name, "ok-2"}); return err },
			"Release": func() error { return e.m.Release(ctx, &lockmgr.Lock{Name: name, Token: held.Token}) },
		}
		for call, fn := range calls {
			e.refuse(t, fmt.Sprintf("%s(%q)", call, name), lockmgr.ErrInvalidName, fn)
		}
	}
	require.NoError(t, e.m.Release(ctx, held))
}

// hostileDurations tries negative, zero, tiny and huge durations.
func hostileDurations(t *testing.T, e *hostileEnv) {
	ctx := context.Background()
	for _, opt := range []struct {
		what string
		o    lockmgr.LockOption
	}{
		{"Expires(-1ns)", lockmgr.Expires(-1)}, {"Expires(MinInt64)", lockmgr.Expires(math.MinInt64)},
		{"Wait(-1s)", lockmgr.Wait(-time.Second)}, {"KeepAliveEvery(-1s)", lockmgr.KeepAliveEvery(-time.Second)},
		{"KeepAliveEvery(0)", lockmgr.KeepAliveEvery(0)}, {"nil option", nil},
		{"LockedBy(256 bytes)", lockmgr.LockedBy(strings.Repeat("b", 256))}, {"LockedBy(NUL)", lockmgr.LockedBy("a\x00")},
	} {
		e.refuse(t, "GetLock "+opt.what, lockmgr.ErrInvalidOption, func() error {
			_, err := e.m.GetLock(ctx, "dur", opt.o)
			return err
		})
		e.refuse(t, "Acquire "+opt.what, lockmgr.ErrInvalidOption, func() error {
			_, err := e.m.Acquire(ctx, "dur", opt.o)
			return err
		})
		e.refuse(t, "SetLock "+opt.what, lockmgr.ErrInvalidOption, func() error {
			_, err := e.m.SetLock(ctx, []string{"dur"}, opt.o)
			return err
		})
	}
	huge := []time.Duration{math.MaxInt64, 100 * 365 * 24 * time.Hour}
	for _, d := range huge {
		e.tried++
		var l *lockmgr.Lock
		err := guard(func() (err error) { l, err = e.m.GetLock(ctx, "huge", lockmgr.Expires(d), lockmgr.Wait(d)); return })
		if errors.Is(err, lockmgr.ErrInvalidOption) {
			assert.Empty(t, rowSnap(t, e.db, e.table))
			continue
		}
		require.NoError(t, err, "Expires(%v)", d)
		require.NotNil(t, l.LockedUntil)
		assert.True(t, l.LockedUntil.After(time.Now().Add(50*365*24*time.Hour)), "Expires(%v) gave %v", d, l.LockedUntil)
		held, err := e.m.IsLocked(ctx, "huge")
		require.NoError(t, err)
		assert.True(t, held)
		for i := 0; i < 3; i++ { // AddTime on a far expiry must not overflow
			e.tried++
			_, err := e.m.Renew(ctx, l, lockmgr.Expires(d), lockmgr.AddTime())
			if err != nil {
				assert.ErrorIs(t, err, lockmgr.ErrInvalidOption, "Renew AddTime %v", d)
			}
		}
		assert.NoError(t, e.m.Release(ctx, l))
	}
	// A tiny expiry is honoured, not rounded to zero (which means "never").
	e.tried++
	l, err := e.m.GetLock(ctx, "tiny", lockmgr.Expires(time.Nanosecond))
	require.NoError(t, err)
	require.NotNil(t, l.LockedUntil, "Expires(1ns) made a lock that never expires")
	time.Sleep(20 * time.Millisecond)
	held, err := e.m.IsLocked(ctx, "tiny")
	require.NoError(t, err)
	assert.False(t, held, "Expires(1ns) still held 20ms later")
	_, _ = e.m.Reset(ctx)
	// A keep-alive slower than the expiry: an open scope must still hold.
	e.tried++
	s, err := e.m.Acquire(ctx, "slowkeep", lockmgr.Expires(600*time.Millisecond), lockmgr.KeepAliveEvery(time.Hour))
	require.NoError(t, err)
	time.Sleep(time.Second)
	held, err = e.m.IsLocked(ctx, "slowkeep")
	require.NoError(t, err)
	assert.True(t, held || s.Context().Err() != nil, "a scope whose lock expired was not told (KeepAliveEvery > Expires)")
	_ = s.Close()
	_, _ = e.m.Reset(ctx)
}

// hostileLocks passes nil, empty, forged and foreign *Lock values to the
// owner-checked calls.
func hostileLocks(t *testing.T, e *hostileEnv) {
	ctx := context.Background()
	mine, err := e.m.GetLock(ctx, "owned", lockmgr.Expires(time.Minute))
	require.NoError(t, err)
	e.refuse(t, "Release(nil)", lockmgr.ErrInvalidOption, func() error { return e.m.Release(ctx, nil) })
	e.refuse(t, "Renew(nil)", lockmgr.ErrInvalidOption, func() error { _, err := e.m.Renew(ctx, nil); return err })
	e.refuse(t, "Release(&Lock{})", lockmgr.ErrInvalidName, func() error { return e.m.Release(ctx, &lockmgr.Lock{}) })
	e.refuse(t, "Renew(&Lock{})", lockmgr.ErrInvalidName, func() error { _, err := e.m.Renew(ctx, &lockmgr.Lock{}); return err })
	for _, token := range []string{"", "forged", "' OR '1'='1", mine.Token + " ", strings.ToUpper(mine.Token), mine.Token + "%", mine.Token[:len(mine.Token)-1] + "_"} {
		forged := *mine
		forged.Token = token
		e.refuse(t, fmt.Sprintf("Release(token %q)", token), lockmgr.ErrNotHeld, func() error { return e.m.Release(ctx, &forged) })
		e.refuse(t, fmt.Sprintf("Renew(token %q)", token), lockmgr.ErrNotHeld, func() error { _, err := e.m.Renew(ctx, &forged); return err })
	}
	// A Lock from another table, even with a live token, is not held here.
	otherTable := tableName("lock")
	other := newManager(t, e.db, otherTable)
	foreign, err := other.GetLock(ctx, "owned", lockmgr.Expires(time.Minute))
	require.NoError(t, err)
	e.refuse(t, "Release(lock of another table)", lockmgr.ErrNotHeld, func() error { return e.m.Release(ctx, foreign) })
	e.refuse(t, "Renew(lock of another table)", lockmgr.ErrNotHeld, func() error { _, err := e.m.Renew(ctx, foreign); return err })
	e.refuse(t, "other.Release(lock of this table)", lockmgr.ErrNotHeld, func() error { return other.Release(ctx, mine) })
	held, err := other.IsLocked(ctx, "owned")
	require.NoError(t, err)
	assert.True(t, held, "the other table's lock was released by a foreign Lock")
	assert.NoError(t, other.Release(ctx, foreign))
	assert.NoError(t, e.m.Release(ctx, mine), "the owner could not release after the hostile calls")
}

// hostileSetLock sends SetLock 10 000 names at once, duplicates, and an
// all-or-nothing batch that fails at its last name.
func hostileSetLock(t *testing.T, e *hostileEnv) {
	ctx := context.Background()
	names := make([]string, 10000)
	for i := range names {
		names[i] = fmt.Sprintf("bulk-%05d", i)
	}
	e.tried++
	start := time.Now()
	var res *lockmgr.LockSetResult
	err := guard(func() (err error) { res, err = e.m.SetLock(ctx, names, lockmgr.Expires(time.Minute)); return })
	took := time.Since(start)
	if err != nil {
		assert.NotContains(t, err.Error(), "PANIC")
		assert.Empty(t, rowSnap(t, e.db, e.table), "SetLock of 10 000 names failed (%v) and left rows behind", err)
		t.Errorf("SetLock of 10 000 names failed: %v", err)
	} else {
		assert.Equal(t, 10000, res.Counts.Created)
		assert.Len(t, res.Statuses, 10000)
		assert.EqualValues(t, 10000, countRows(t, e.db, e.table))
	}
	t.Logf("SetLock(10 000 names) took %v", took)
	_, err = e.m.Reset(ctx)
	require.NoError(t, err)

	// All or nothing: the last of 10 000 names is held, so nothing is written.
	blocker, err := e.m.GetLock(ctx, names[len(names)-1], lockmgr.Expires(time.Minute))
	require.NoError(t, err)
	e.refuse(t, "SetLock(10 000 names, Fail) with the last held", lockmgr.ErrLocked, func() error {
		_, err := e.m.SetLock(ctx, names, lockmgr.Expires(time.Minute), lockmgr.Fail())
		var lf *lockmgr.LockFail
		if err != nil && !errors.As(err, &lf) {
			return fmt.Errorf("not a *LockFail: %w", err)
		}
		return err
	})
	require.NoError(t, e.m.Release(ctx, blocker))

	// Duplicates: a clear error with nothing written, or each name once.
	e.tried++
	before := rowSnap(t, e.db, e.table)
	err = guard(func() (err error) {
		res, err = e.m.SetLock(ctx, []string{"dup", "dup", "other", "dup"}, lockmgr.Expires(time.Minute))
		return
	})
	if err != nil {
		assert.NotContains(t, err.Error(), "PANIC")
		assert.True(t, errors.Is(err, lockmgr.ErrInvalidName) || errors.Is(err, lockmgr.ErrInvalidOption), "duplicates: unclear error %v", err)
		assert.Equal(t, before, rowSnap(t, e.db, e.table))
	} else {
		assert.EqualValues(t, 2, countRows(t, e.db, e.table), "duplicates made extra rows")
		for _, n := range []string{"dup", "other"} {
			held, err := e.m.IsLocked(ctx, n)
			require.NoError(t, err)
			assert.True(t, held, n)
		}
	}
	e.tried++
	before = rowSnap(t, e.db, e.table)
	err = guard(func() error { _, err := e.m.SetLock(ctx, nil); return err })
	if err != nil {
		assert.True(t, errors.Is(err, lockmgr.ErrInvalidName) || errors.Is(err, lockmgr.ErrInvalidOption), "SetLock(no names): %v", err)
	}
	assert.Equal(t, before, rowSnap(t, e.db, e.table))
	_, err = e.m.Reset(ctx)
	require.NoError(t, err)
}

// hostileManagerOptions tries table names that would be SQL.
func hostileManagerOptions(t *testing.T, e *hostileEnv) {
	for _, table := range []string{"", "x; DROP TABLE y", "a.b.c", "lock`s", `lock"s`, "lock's", "1abc", strings.Repeat("t", 64), "a b"} {
		e.tried++
		err := guard(func() error { _, err := lockmgr.New(e.db, lockmgr.WithTable(table)); return err })
		assert.ErrorIs(t, err, lockmgr.ErrInvalidOption, "WithTable(%q)", table)
	}
	e.tried++
	_, err := lockmgr.New(nil)
	assert.ErrorIs(t, err, lockmgr.ErrInvalidOption, "New(nil)")
}
