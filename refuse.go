package lockmgr

import (
	"context"
	"fmt"
	"reflect"
	"strings"

	"gorm.io/gorm"
)

// Engines that speak a supported wire protocol but cannot keep lockmgr's
// guarantees are refused, with the reason, instead of handing out locks
// that silently break them. docs/distributed-sql.md has the evidence.

// engineProblem reports why lockmgr cannot serve the engine whose version
// string is version (GORM's MySQL ServerVersion, or PostgreSQL's
// SELECT version()), or nil when it can. The error matches
// ErrUnsupportedEngine.
func engineProblem(version string) error {
	var why string
	switch lower := strings.ToLower(version); {
	case strings.Contains(lower, "cockroachdb"):
		why = "CockroachDB: its pg_advisory_xact_lock is missing or a no-op in most releases, so " +
			"acquisitions are not ordered per name, and each node takes statement_timestamp() " +
			"and clock_timestamp() from its own clock, so a fence taken after a release on " +
			"another node can be lower than the previous holder's"
	case strings.Contains(lower, "-yb-"):
		why = "YugabyteDB: its advisory locks are missing or behind a preview flag in most " +
			"releases, and each tablet server reads its own clock for statement_timestamp() " +
			"and clock_timestamp(), so a fence taken after a release on another server can be " +
			"lower than the previous holder's"
	case strings.Contains(lower, "vitess"):
		why = "Vitess/PlanetScale: an acquisition reads a fence bucket and writes the lock row " +
			"in one statement, which vtgate may split across shards and commit without " +
			"atomicity, so the bucket lock that orders fences can be released before the " +
			"lock row commits; connect to the keyspace's MySQL primary instead"
	default:
		return nil
	}
	return fmt.Errorf("%w: %s (server version %q)", ErrUnsupportedEngine, why, version)
}

// serverVersion is the version GORM's MySQL dialector recorded when it
// connected, or "" (another dialector, or one that records none).
func serverVersion(db *gorm.DB) string {
	v := reflect.Indirect(reflect.ValueOf(db.Dialector))
	if v.Kind() != reflect.Struct {
		return ""
	}
	f := v.FieldByName("ServerVersion")
	if !f.IsValid() || f.Kind() != reflect.String {
		return ""
	}
	return f.String()
}

// checkEngine asks a PostgreSQL-wire server what it is (engine.Version),
// with the first-use table check: CockroachDB and YugabyteDB answer the
// protocol as PostgreSQL, and GORM's driver records no version. MySQL-wire
// engines are checked by New.
func (m *Manager) checkEngine(ctx context.Context) error {
	version, err := m.d.eng.Version(ctx, m.conn(ctx))
	if err != nil {
		return fmt.Errorf("lockmgr: check table %s: %w", m.tableName, err)
	}
	return engineProblem(version)
}
