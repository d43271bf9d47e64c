// Package dsn turns the database strings that lockmgr's CLI (--dsn,
// LOCKMGR_DSN) and its examples (-dsn) accept into a database/sql driver
// name, a DSN in that driver's syntax and a GORM dialector, so that the
// same string means the same database everywhere.
//
// It lives in internal/ so that only lockmgr's own modules import it: the
// CLI (cmd/lockmgr), the examples and the reliability tests; the library
// itself does not (it takes a *gorm.DB, never a string).
package dsn
