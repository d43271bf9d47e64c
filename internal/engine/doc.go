// Package engine holds everything lockmgr does differently on each
// database it supports, one type per engine behind the Engine interface
// (engine.go):
//
//   - postgres.go, postgres_migrate.go: Postgres (PostgreSQL);
//   - mysql.go: MySQL, for MySQL, MariaDB and TiDB, with its Galera forms
//     and probe in mysql_galera.go, TiDB's acquisition in mysql_tidb.go,
//     its migration and TiDB's rebuild in mysql_migrate.go, and its fence
//     side table and trigger in mysql_fence.go (the MySQL family's file
//     would pass 400 lines);
//   - sqlite.go, sqlite_migrate.go: SQLite.
//
// Each engine owns its lock statements, as literal SQL with @name
// placeholders (Statements, statements.go; the values they bind are in
// args.go), the other texts it sends them as (Forms: Galera's synced
// forms, MariaDB's bounded lock waits), its steps (Acquire, Renew,
// Release, Bounded, InTx, …, run through a Runner that package lockmgr
// gives it, runner.go), its migration and catalog (Migrator, migrate.go),
// and its reading of the database's errors (a statement to run again, a
// lock wait given up, a table not shaped as the migration leaves it).
//
// Only package lockmgr imports it, and it imports no lockmgr package:
// what an engine needs of lockmgr (running a statement with the call's
// values, a transaction, a lock of lockmgr's own, a pause) it is given as
// arguments, and it returns rows and the driver's errors.
//
// A fifth engine is one new file here, a type implementing Engine, plus
// its case in For and its entry in the root suite's test targets
// (helpers_test.go) and in the golden file's variants
// (statements_golden_test.go).
package engine
