package demo

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestOpenTakesTheCLIsDSNs(t *testing.T) {
	dir := t.TempDir()
	for in, where := range map[string]string{
		filepath.Join(dir, "a.db"):               "sqlite://" + filepath.Join(dir, "a.db"),
		"sqlite://" + filepath.Join(dir, "b.db"): "sqlite://" + filepath.Join(dir, "b.db"),
	} {
		db, err := Open(in)
		require.NoError(t, err, in)
		assert.Equal(t, where, db.Where)
		require.NoError(t, db.Exec("CREATE TABLE t (x int)").Error, "the file is created")
		require.NoError(t, db.Close())
	}

	// A mysql:// URL is MySQL, not a SQLite file of that name: nothing
	// listens on port 1, so opening it fails, naming the server.
	_, err := Open("mysql://app:secret@127.0.0.1:1/locks")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "open mysql://app@127.0.0.1:1/locks: ")
	assert.NotContains(t, err.Error(), "secret")

	_, err = Open("redis://127.0.0.1")
	assert.EqualError(t, err, `-dsn: invalid DSN: unknown scheme "redis" (want postgres, mysql or sqlite)`)
}
