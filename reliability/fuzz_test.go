package reliability

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/gormlock/lockmgr"
)

// fuzzManager opens a SQLite temp file for one fuzz process.
func fuzzManager(f *testing.F) (*lockmgr.Manager, *gorm.DB, string) {
	db, err := openDB("sqlite", sqliteDSN(filepath.Join(f.TempDir(), "fuzz.db")))
	require.NoError(f, err)
	sqlDB, err := db.DB()
	require.NoError(f, err)
	f.Cleanup(func() { _ = sqlDB.Close() })
	table := tableName("fuzz")
	m, err := lockmgr.New(db, lockmgr.WithTable(table))
	require.NoError(f, err)
	require.NoError(f, m.AutoMigrate(context.Background()))
	return m, db, table
}

// FuzzName: a valid name (1..255 bytes of UTF-8 without NUL) is taken,
// seen byte for byte, refused to a second taker and released; any other
// string gets ErrInvalidName from every call and writes nothing.
func FuzzName(f *testing.F) {
	for _, s := range append(append([]string{}, validNames...), invalidNames...) {
		f.Add(s)
	}
	m, db, table := fuzzManager(f)
	f.Fuzz(func(t *testing.T, name string) {
		ctx := context.Background()
		l, err := m.GetLock(ctx, name, lockmgr.Expires(time.Minute))
		if !nameIsValid(name) {
			require.ErrorIs(t, err, lockmgr.ErrInvalidName)
			_, err = m.IsLocked(ctx, name)
			require.ErrorIs(t, err, lockmgr.ErrInvalidName)
			_, err = m.SetLock(ctx, []string{"x", name})
			require.ErrorIs(t, err, lockmgr.ErrInvalidName)
			require.Zero(t, countRows(t, db, table))
			return
		}
		require.NoError(t, err)
		require.Equal(t, name, l.Name)
		held, err := m.IsLocked(ctx, name)
		require.NoError(t, err)
		require.True(t, held)
		list, err := m.List(ctx)
		require.NoError(t, err)
		require.Len(t, list, 1)
		require.Equal(t, name, list[0].Name)
		_, err = m.GetLock(ctx, name)
		require.ErrorIs(t, err, lockmgr.ErrLocked)
		require.NoError(t, m.Release(ctx, l))
		held, err = m.IsLocked(ctx, name)
		require.NoError(t, err)
		require.False(t, held)
		require.Zero(t, countRows(t, db, table))
	})
}

// Option bits for FuzzOptions.
const (
	optExpires = 1 << iota
	optWait
	optKeepAlive
	optNoKeepAlive
	optAddTime
	optCreate
	optLockedBy
	optProcess
)

// FuzzOptions: any combination of options on GetLock, Acquire and
// RenewLock. A negative Expires or Wait, a KeepAliveEvery that is not
// positive, or an option the call does not take (AddTime on GetLock, Wait
// on RenewLock, …) is ErrInvalidOption with nothing written; anything else
// works.
func FuzzOptions(f *testing.F) {
	f.Add(uint8(optExpires), int64(time.Minute), int64(0), int64(0), "me")
	f.Add(uint8(optExpires|optWait|optKeepAlive), int64(time.Second), int64(time.Second), int64(300*time.Millisecond), "")
	f.Add(uint8(optExpires), int64(-1), int64(0), int64(0), "")
	f.Add(uint8(optWait), int64(0), int64(-time.Second), int64(0), "")
	f.Add(uint8(optKeepAlive), int64(0), int64(0), int64(0), "")
	f.Add(uint8(0xff), int64(1<<62), int64(1<<62), int64(1), strings.Repeat("é", 127))
	f.Add(uint8(optLockedBy), int64(0), int64(0), int64(0), strings.Repeat("b", 256))
	f.Add(uint8(optExpires|optAddTime|optCreate), int64(1), int64(0), int64(0), "\x00")
	m, db, table := fuzzManager(f)
	f.Fuzz(func(t *testing.T, bits uint8, expires, wait, keep int64, by string) {
		var opts []lockmgr.LockOption
		valuesOK := true
		add := func(bit uint8, ok bool, o lockmgr.LockOption) {
			if bits&bit != 0 {
				opts = append(opts, o)
				valuesOK = valuesOK && ok
			}
		}
		add(optExpires, expires >= 0, lockmgr.Expires(time.Duration(expires)))
		add(optWait, wait >= 0, lockmgr.Wait(time.Duration(wait)))
		add(optKeepAlive, keep > 0, lockmgr.KeepAliveEvery(time.Duration(keep)))
		add(optNoKeepAlive, true, lockmgr.NoKeepAlive())
		add(optAddTime, true, lockmgr.AddTime())
		add(optCreate, true, lockmgr.Create())
		add(optLockedBy, len(by) <= 255 && utf8.ValidString(by) && !strings.ContainsRune(by, 0), lockmgr.LockedBy(by))
		add(optProcess, true, lockmgr.Process(expires))
		ctx := context.Background()
		check := func(what string, accepted uint8, err error) bool {
			if !valuesOK || bits&^accepted != 0 {
				require.ErrorIs(t, err, lockmgr.ErrInvalidOption, what)
				require.Zero(t, countRows(t, db, table), what)
				return false
			}
			require.NoError(t, err, what)
			return true
		}
		_, err := m.GetLock(ctx, "opt", opts...)
		check("GetLock", optExpires|optWait|optLockedBy|optProcess, err)
		require.NoError(t, m.Unlock(ctx, "opt"))
		_, err = m.RenewLock(ctx, "opt", opts...)
		if bits&optCreate == 0 && errors.Is(err, lockmgr.ErrLockNotFound) {
			err = nil // nothing to renew, as asked
		}
		check("RenewLock", optExpires|optAddTime|optCreate|optLockedBy|optProcess, err)
		require.NoError(t, m.Unlock(ctx, "opt"))
		s, err := m.Acquire(ctx, "opt", opts...)
		if check("Acquire", optExpires|optWait|optKeepAlive|optNoKeepAlive|optLockedBy|optProcess, err) {
			if err := s.Close(); err != nil && !errors.Is(err, lockmgr.ErrNotHeld) {
				require.ErrorIs(t, err, lockmgr.ErrLockLost, "Close")
			}
		}
		require.NoError(t, m.Unlock(ctx, "opt"))
		require.Zero(t, countRows(t, db, table))
	})
}

// FuzzSetLock: names split on newlines. Any invalid name refuses the
// whole batch with ErrInvalidName, writing nothing; otherwise every
// distinct name ends up held, once.
func FuzzSetLock(f *testing.F) {
	f.Add("a\nb\nc")
	f.Add("a\na\nb")
	f.Add("a\n\nb")
	f.Add("x\n" + strings.Repeat("y", 256))
	f.Add("'; DROP TABLE t; --\n%\n_")
	f.Add("a\x00\nb")
	m, db, table := fuzzManager(f)
	f.Fuzz(func(t *testing.T, joined string) {
		names := strings.Split(joined, "\n")
		if len(names) > 50 {
			names = names[:50]
		}
		valid := true
		distinct := map[string]bool{}
		for _, n := range names {
			valid = valid && nameIsValid(n)
			distinct[n] = true
		}
		ctx := context.Background()
		res, err := m.SetLock(ctx, names, lockmgr.Expires(time.Minute))
		switch {
		case !valid:
			require.ErrorIs(t, err, lockmgr.ErrInvalidName)
			require.Zero(t, countRows(t, db, table))
			return
		case err != nil:
			require.Less(t, len(distinct), len(names), "SetLock failed without duplicates: %v", err)
			require.True(t, errors.Is(err, lockmgr.ErrInvalidName) || errors.Is(err, lockmgr.ErrInvalidOption), "unclear error: %v", err)
			require.Zero(t, countRows(t, db, table))
			return
		}
		require.NotNil(t, res)
		require.EqualValues(t, len(distinct), countRows(t, db, table))
		for n := range distinct {
			held, err := m.IsLocked(ctx, n)
			require.NoError(t, err)
			require.True(t, held, n)
		}
		_, err = m.Reset(ctx)
		require.NoError(t, err)
	})
}
