// Package reliability attacks lockmgr's safety and records what it survived.
//
// It holds only tests: a multi-process torture harness that proves no two
// holders of a name ever overlap, crash, database-restart and network-fault
// tests, a shutdown test (a replica SIGTERMed inside Do keeps its lock until
// fn returns, one killed with -9 keeps it until it expires), a
// replica-routing test, a table of hostile inputs and fuzz targets.
// Run it with
//
//	LOCKMGR_TORTURE=short go test ./reliability/
//
// LOCKMGR_TORTURE unset runs a few-second smoke of the harness; "short" is
// the CI form (about 30 s per database); "long" runs ten minutes per
// database. PostgreSQL and MariaDB join when LOCKMGR_TEST_POSTGRES_DSN and
// LOCKMGR_TEST_MYSQL_DSN are set. See RESULTS.md, and the README's Reliability section.
package reliability
