package lockmgr_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/mysql"
	"gorm.io/gorm"

	"github.com/gormlock/lockmgr"
)

// Version strings as the engines report them: GORM's MySQL ServerVersion,
// or PostgreSQL's SELECT version().
var engineVersions = []struct {
	version string
	refused string // "" = served; else a word the reason must contain
}{
	{"10.11.6-MariaDB-0+deb12u1", ""},
	{"8.0.36", ""},
	{"8.0.11-TiDB-v9.0.0-beta.2.pre-760-ge4e814fdc0", ""},
	{"PostgreSQL 15.14 (Debian 15.14-0+deb12u1) on x86_64-pc-linux-gnu", ""},
	{"CockroachDB CCL v24.3.1 (x86_64-pc-linux-gnu, built 2024/12/12 00:00:00, go1.22.8 X:nocoverageredesign)", "CockroachDB"},
	{"PostgreSQL 11.2-YB-2.20.1.0-b0 on x86_64-pc-linux-gnu, compiled by clang version 16.0.6", "YugabyteDB"},
	{"PostgreSQL 15.2-YB-2025.1.0.0-b0 on x86_64-pc-linux-gnu", "YugabyteDB"},
	{"8.0.30-Vitess", "Vitess"},
	{"8.0.23-vitess", "Vitess"},
}

func TestEngineProblem(t *testing.T) {
	for _, c := range engineVersions {
		err := lockmgr.EngineProblem(c.version)
		if c.refused == "" {
			assert.NoError(t, err, c.version)
			continue
		}
		require.ErrorIs(t, err, lockmgr.ErrUnsupportedEngine, c.version)
		assert.Contains(t, err.Error(), c.refused)
		assert.Contains(t, err.Error(), "fence", "the reason names the guarantee at stake")
	}
}

// TestNewRefusesEngine: New refuses a MySQL-wire engine it cannot serve
// from the version GORM recorded, before any SQL; it accepts TiDB.
func TestNewRefusesEngine(t *testing.T) {
	open := func(version string) *gorm.DB {
		db, err := gorm.Open(mysql.New(mysql.Config{
			DSN: "nobody@tcp(127.0.0.1:1)/none", ServerVersion: version, SkipInitializeWithVersion: true,
		}), &gorm.Config{DisableAutomaticPing: true})
		require.NoError(t, err)
		t.Cleanup(func() {
			if s, err := db.DB(); err == nil {
				_ = s.Close()
			}
		})
		return db
	}
	_, err := lockmgr.New(open("8.0.30-Vitess"))
	require.ErrorIs(t, err, lockmgr.ErrUnsupportedEngine)
	assert.Contains(t, err.Error(), "vtgate")
	m, err := lockmgr.New(open("8.0.11-TiDB-v8.5.0"))
	require.NoError(t, err)
	assert.Equal(t, lockmgr.DefaultTable, m.Table())
}
