package lockmgr_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/gormlock/lockmgr"
)

// dropAll removes table and every side structure lockmgr makes for it.
func dropAll(t testing.TB, db *gorm.DB, kind, table string) {
	_ = db.Migrator().DropTable(table, table+"_fence")
}

// checkLockTable asserts what a user relies on from a set-up table:
// byte-exact names, 255-byte names, fences that grow across deletions,
// and mutual exclusion.
func checkLockTable(e *env) {
	t := e.t
	t.Helper()
	for _, name := range []string{"a", "A", "a ", strings.Repeat("n", lockmgr.MaxNameLen)} {
		_, err := e.m.GetLock(e.ctx, name)
		require.NoError(t, err, "GetLock(%q): names are byte-exact and up to 255 bytes", name)
	}
	_, err := e.m.GetLock(e.ctx, "a")
	require.ErrorIs(t, err, lockmgr.ErrLocked)
	first := e.lock("fenced")
	require.NoError(t, e.m.Release(e.ctx, first))
	second := e.lock("fenced")
	assert.Greater(t, second.Fence, first.Fence, "fences grow across deletions")
	_, err = e.m.Reset(e.ctx)
	require.NoError(t, err)
}
