// Package engine holds what lockmgr does differently on each database it
// supports, one type per engine, each in its own file: its lock
// statements, as literal SQL with @name placeholders (Statements), and
// which of a database's errors lockmgr acts on (a statement to run again,
// a lock wait given up, a table not shaped as lockmgr's migration leaves
// it).
//
// Only package lockmgr imports it, and it imports no lockmgr package: an
// engine gets what it needs as arguments.
package engine
