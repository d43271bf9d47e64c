package dsn

import (
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	gormmysql "gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
)

// sqliteDefaults are added to a SQLite DSN unless it sets them itself: wait
// up to 5 s for another process's write lock instead of failing with
// SQLITE_BUSY, let readers run beside a writer, and take the write lock at
// BEGIN so two transactions cannot deadlock upgrading their locks.
var sqliteDefaults = []struct{ key, alias, value string }{
	{"_busy_timeout", "_timeout", "5000"},
	{"_journal_mode", "_journal", "WAL"},
	{"_txlock", "", "immediate"},
}

// ErrInvalid marks a DSN that could not be understood.
var ErrInvalid = errors.New("invalid DSN")

// Database is a parsed DSN: the database/sql driver and DSN to open, and a
// description safe to print (no password).
type Database struct {
	Kind    string // "postgres", "mysql" or "sqlite"
	Driver  string // the database/sql driver name
	DSN     string // in the driver's own syntax
	Display string
	mysql   *mysql.Config
}

// Dialector is the GORM dialector for conn, a connection pool opened with
// Driver and DSN; with a nil conn the dialector opens its own.
func (d Database) Dialector(conn *sql.DB) gorm.Dialector {
	var pool gorm.ConnPool // stays a nil interface, not a nil *sql.DB, without conn
	if conn != nil {
		pool = conn
	}
	switch d.Kind {
	case "postgres":
		return postgres.New(postgres.Config{DSN: d.DSN, Conn: pool})
	case "mysql":
		return gormmysql.New(gormmysql.Config{DSN: d.DSN, DSNConfig: d.mysql, Conn: pool})
	default:
		return sqlite.New(sqlite.Config{DSN: d.DSN, DriverName: d.Driver, Conn: pool})
	}
}

// Parse turns a DSN into a Database. It accepts
// postgres:// and postgresql:// URLs (passed to pgx as they are),
// mysql://user:pass@host:port/db?params URLs, go-sql-driver DSNs such as
// user@tcp(host:3306)/db, sqlite://path and plain SQLite file paths.
// MySQL DSNs without a timeout parameter get dialTimeout as their
// connection timeout: GORM's MySQL dialector queries the server as it opens.
func Parse(dsn string, dialTimeout time.Duration) (Database, error) {
	dsn = strings.TrimSpace(dsn)
	lower := strings.ToLower(dsn)
	switch {
	case dsn == "":
		return Database{}, fmt.Errorf("%w: empty", ErrInvalid)
	case strings.HasPrefix(lower, "postgres://"), strings.HasPrefix(lower, "postgresql://"):
		return postgresDatabase(dsn)
	case strings.HasPrefix(lower, "mysql://"):
		return mysqlURLDatabase(dsn, dialTimeout)
	case strings.Contains(dsn, "@tcp("), strings.Contains(dsn, "@unix("):
		return mysqlDriverDatabase(dsn, dialTimeout)
	case strings.HasPrefix(lower, "sqlite://"):
		return sqliteDatabase(dsn[len("sqlite://"):])
	case strings.HasPrefix(lower, "sqlite3://"):
		return sqliteDatabase(dsn[len("sqlite3://"):])
	case strings.Contains(dsn, "://"):
		scheme, _, _ := strings.Cut(dsn, "://")
		return Database{}, fmt.Errorf("%w: unknown scheme %q (want postgres, mysql or sqlite)", ErrInvalid, scheme)
	default:
		return sqliteDatabase(dsn)
	}
}

// postgresDatabase checks that dsn is a URL and hands it to pgx unchanged.
func postgresDatabase(dsn string) (Database, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return Database{}, fmt.Errorf("%w: %s", ErrInvalid, redactURLError(err))
	}
	return Database{Kind: "postgres", Driver: "pgx", DSN: dsn, Display: u.Redacted()}, nil
}

// mysqlURLDatabase turns mysql://user:pass@host:port/db?params into
// go-sql-driver's user:pass@tcp(host:port)/db?params.
func mysqlURLDatabase(dsn string, dialTimeout time.Duration) (Database, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return Database{}, fmt.Errorf("%w: %s", ErrInvalid, redactURLError(err))
	}
	if u.Host == "" {
		return Database{}, fmt.Errorf("%w: mysql:// URL without a host", ErrInvalid)
	}
	cfg := mysql.NewConfig()
	cfg.User = u.User.Username()
	cfg.Passwd, _ = u.User.Password()
	cfg.Net = "tcp"
	cfg.Addr = u.Host
	if u.Port() == "" {
		cfg.Addr = u.Host + ":3306"
	}
	cfg.DBName = strings.TrimPrefix(u.Path, "/")
	base := cfg.FormatDSN()
	if u.RawQuery != "" {
		sep := "?"
		if strings.Contains(base, "?") {
			sep = "&"
		}
		base += sep + u.RawQuery
	}
	return mysqlDriverDatabase(base, dialTimeout)
}

// mysqlDriverDatabase validates a go-sql-driver DSN and makes sure it parses
// DATETIME columns into time.Time (parseTime), keeping loc=UTC unless the
// DSN sets another.
func mysqlDriverDatabase(dsn string, dialTimeout time.Duration) (Database, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return Database{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	cfg.ParseTime = true
	if cfg.Timeout == 0 {
		cfg.Timeout = dialTimeout
	}
	addr := cfg.Addr
	if cfg.Net != "tcp" {
		addr = cfg.Net + "(" + cfg.Addr + ")"
	}
	return Database{
		Kind:    "mysql",
		Driver:  "mysql",
		DSN:     cfg.FormatDSN(),
		Display: fmt.Sprintf("mysql://%s@%s/%s", cfg.User, addr, cfg.DBName),
		mysql:   cfg,
	}, nil
}

// sqliteDatabase builds a mattn/go-sqlite3 DSN for the file at path (which
// may carry ?params), adding sqliteDefaults that it does not set.
func sqliteDatabase(path string) (Database, error) {
	file, query, _ := strings.Cut(path, "?")
	if file == "" {
		return Database{}, fmt.Errorf("%w: SQLite DSN without a file path", ErrInvalid)
	}
	params, err := url.ParseQuery(query)
	if err != nil {
		return Database{}, fmt.Errorf("%w: SQLite parameters: %v", ErrInvalid, err)
	}
	for _, d := range sqliteDefaults {
		if !params.Has(d.key) && (d.alias == "" || !params.Has(d.alias)) {
			params.Set(d.key, d.value)
		}
	}
	return Database{Kind: "sqlite", Driver: sqlite.DriverName, DSN: file + "?" + params.Encode(), Display: "sqlite://" + file}, nil
}

// redactURLError describes a url.Parse failure without repeating the URL,
// which may contain a password.
func redactURLError(err error) string {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return uerr.Err.Error()
	}
	return "cannot parse URL"
}
