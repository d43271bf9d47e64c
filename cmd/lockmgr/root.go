package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/gormlock/lockmgr"
	"github.com/gormlock/lockmgr/internal/dsn"
	"github.com/spf13/cobra"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// defaultDSN is used when neither --dsn nor LOCKMGR_DSN is set: a SQLite
// file in the current directory, so the CLI works with nothing set up.
const defaultDSN = "sqlite://lockmgr.db"

// defaultTable is django-lockmgr's table name, lockmgr's default.
const defaultTable = "lockmgr_lock"

// app holds the CLI's streams, its global flags and, once a command has
// connected, the database.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer

	dsn            string
	table          string
	connectTimeout durationFlag
	debug          bool

	started bool     // a command's RunE began: errors from here on are not usage errors
	sqlDB   *sql.DB  // closed by close
	gdb     *gorm.DB // the connected database, once manager has run
}

const rootLong = `lockmgr manages the named, expiring locks that the lockmgr Go library and
django-lockmgr keep in one database table. It lists, sets, clears, resets
and cleans them, creates the table, and runs a command only while it holds
a lock: flock(1) for a whole fleet of hosts that share a database. It also
explains one lock (who holds it, who waits, why GetLock would fail), watches
them live (list --watch) and serves Prometheus metrics and a web page (serve).

A lock is a row: a name, who holds it (locked_by, the hostname by default),
the holder's process id (lock_process) and when it expires (locked_until,
never when empty). An expired lock counts as free.

DATABASE
  --dsn, or the LOCKMGR_DSN environment variable, names the database:

    postgres://user:pass@host:5432/db?sslmode=disable   PostgreSQL (also postgresql://)
    mysql://user:pass@host:3306/db?params               MySQL or MariaDB
    user:pass@tcp(host:3306)/db?params                  the same, go-sql-driver form
    sqlite://path/to/locks.db                           SQLite (also a plain path)

  Without either, lockmgr uses sqlite://lockmgr.db in the current directory.
  MySQL DSNs get parseTime=true. SQLite DSNs get _busy_timeout=5000,
  _journal_mode=WAL and _txlock=immediate unless they set them, so that
  several lockmgr processes can share the file. Only 'lockmgr migrate'
  creates a SQLite file; the other commands refuse one that does not exist.

  --table, or LOCKMGR_TABLE, names the table (default lockmgr_lock, the
  table django-lockmgr uses). Create it once with 'lockmgr migrate'.

EXIT STATUS
  0    success
  1    error: bad DSN, database unreachable, table missing, reset not confirmed
  2    set --fail: a name was already held; nothing was changed
  64   usage error: unknown command or flag, missing or invalid argument
       (such as a lock name longer than 255 bytes, or a bad --table)
  75   run: the lock is held by someone else (EX_TEMPFAIL)
  76   run: the lock was lost while the command ran
  run otherwise exits with its command's status, 128+N if a signal N killed it.

Errors are one line on stderr, starting with "lockmgr: ".`

const rootExample = `  # Create the table, take a lock for ten minutes, look, let it go
  lockmgr migrate
  lockmgr set deploy --timeout 10m
  lockmgr list
  lockmgr clear deploy

  # Run the nightly report on one host of many, from every host's crontab
  */5 * * * * lockmgr run nightly-report -- ./report.sh

  # The same locks, kept in PostgreSQL, listed for a script
  export LOCKMGR_DSN='postgres://app@db.internal/app?sslmode=disable'
  lockmgr list --json`

// rootCommand builds the command tree.
func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "lockmgr",
		Short:         "Manage database-backed locks and run commands under them",
		Long:          rootLong,
		Example:       rootExample,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			a.started = true
			return nil
		},
	}
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &usageError{cmdPath: c.CommandPath(), err: err}
	})
	pf := root.PersistentFlags()
	a.connectTimeout = durationFlag(10 * time.Second)
	pf.StringVar(&a.dsn, "dsn", "", "connect to the database at `DSN` (default $LOCKMGR_DSN, else "+defaultDSN+")")
	pf.StringVar(&a.table, "table", "", "keep the locks in table `NAME` (default $LOCKMGR_TABLE, else "+defaultTable+")")
	pf.Var(&a.connectTimeout, "connect-timeout", "give up connecting to the database after this long")
	pf.BoolVar(&a.debug, "debug", false, "log every SQL statement, and lockmgr's lock events, on stderr")
	root.AddCommand(a.listCommand(), a.setCommand(), a.clearCommand(), a.resetCommand(),
		a.cleanCommand(), a.migrateCommand(), a.runCommand(), a.explainCommand(), a.serveCommand())
	a.addVersion(root)
	return root
}

// noArgs rejects positional arguments as a usage error.
func (a *app) noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return &usageError{cmdPath: cmd.CommandPath(), err: fmt.Errorf("%s takes no arguments, got %q", cmd.CommandPath(), args[0])}
	}
	return nil
}

// minArgs requires at least n positional arguments, naming them in the error.
func (a *app) minArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < n {
			return &usageError{cmdPath: cmd.CommandPath(), err: fmt.Errorf("%s needs %s", cmd.CommandPath(), what)}
		}
		return nil
	}
}

// validateNames checks lock names before anything connects; the error
// matches lockmgr.ErrInvalidName.
func validateNames(names []string) error {
	for _, n := range names {
		if err := lockmgr.ValidateName(n); err != nil {
			return err
		}
	}
	return nil
}

// settings resolves --dsn and --table against the environment and defaults.
func (a *app) settings() (dsnText, table string) {
	dsnText, table = a.dsn, a.table
	if dsnText == "" {
		dsnText = os.Getenv("LOCKMGR_DSN")
	}
	if dsnText == "" {
		dsnText = defaultDSN
	}
	if table == "" {
		table = os.Getenv("LOCKMGR_TABLE")
	}
	if table == "" {
		table = defaultTable
	}
	return dsnText, table
}

// target names what a command works on, for messages.
type target struct {
	Table string // the lock table
	DB    string // the database, without its password
}

// manager connects to the database and binds a lockmgr.Manager to the
// table. Unless forMigrate, it checks the table (completing it as any
// first lockmgr call would): a missing table is an error that says how to
// create it, and a query that fails reports the database's own error.
func (a *app) manager(ctx context.Context, forMigrate bool) (*lockmgr.Manager, target, error) {
	dsnText, table := a.settings()
	dbi, err := dsn.Parse(dsnText, time.Duration(a.connectTimeout))
	if err != nil {
		return nil, target{}, err
	}
	t := target{Table: table, DB: dbi.Display}
	if !forMigrate {
		if err := sqliteFileExists(dbi); err != nil {
			return nil, t, err
		}
	}
	db, err := a.open(ctx, dbi)
	if err != nil {
		return nil, t, err
	}
	a.gdb = db
	opts := []lockmgr.Option{lockmgr.WithTable(table)}
	if a.debug { // the lock statements too, through GORM's logger, and lockmgr's events
		opts = append(opts, lockmgr.WithGORMCallbacks(),
			lockmgr.WithLogger(slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	}
	m, err := lockmgr.New(db, opts...)
	if err != nil {
		return nil, t, err
	}
	if forMigrate {
		return m, t, nil
	}
	if err := m.CheckTable(ctx); err != nil {
		if errors.Is(err, lockmgr.ErrSchema) {
			return nil, t, fmt.Errorf("%s: %w", t.DB, err)
		}
		return nil, t, fmt.Errorf("cannot read table %q in %s: %w", table, t.DB, err)
	}
	return m, t, nil
}

// sqliteFileExists fails when dbi is a SQLite file that does not exist:
// opening it would create it, empty, and only migrate should do that (a
// typo in --dsn would leave a stray file behind).
func sqliteFileExists(dbi dsn.Database) error {
	if dbi.Kind != "sqlite" {
		return nil
	}
	file, query, _ := strings.Cut(dbi.DSN, "?")
	if uri, isURI := strings.CutPrefix(file, "file:"); isURI { // SQLite's URI filenames
		if params, _ := url.ParseQuery(query); params.Get("mode") == "memory" {
			return nil
		}
		file = uri
		if rest, ok := strings.CutPrefix(file, "//"); ok { // file://host/path: the path
			if i := strings.IndexByte(rest, '/'); i >= 0 {
				file = rest[i:]
			}
		}
	}
	if file == "" || file == ":memory:" {
		return nil
	}
	if _, err := os.Stat(file); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("cannot connect to %s: the database file does not exist; 'lockmgr migrate' creates it", dbi.Display)
	}
	return nil // another error is the driver's to report
}

// open connects to dbi and checks the connection within --connect-timeout,
// before GORM's dialector (which may query the server) sees it.
func (a *app) open(ctx context.Context, dbi dsn.Database) (*gorm.DB, error) {
	cfg := &gorm.Config{Logger: logger.Discard}
	if a.debug {
		cfg.Logger = logger.New(log.New(a.stderr, "", log.LstdFlags), logger.Config{LogLevel: logger.Info})
	} else {
		_ = mysql.SetLogger(log.New(io.Discard, "", 0)) // else it logs retried connections on stderr
	}
	conn, err := sql.Open(dbi.Driver, dbi.DSN)
	if err != nil {
		return nil, fmt.Errorf("cannot connect to %s: %w", dbi.Display, err)
	}
	a.sqlDB = conn
	pingCtx, cancel := context.WithTimeout(ctx, time.Duration(a.connectTimeout))
	defer cancel()
	if err := conn.PingContext(pingCtx); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("cannot connect to %s: no answer within %s (--connect-timeout)", dbi.Display, time.Duration(a.connectTimeout))
		}
		return nil, fmt.Errorf("cannot connect to %s: %w", dbi.Display, err)
	}
	db, err := gorm.Open(dbi.Dialector(conn), cfg)
	if err != nil {
		return nil, fmt.Errorf("cannot connect to %s: %w", dbi.Display, err)
	}
	return db, nil
}

// close closes the database connection, if one was opened.
func (a *app) close() {
	if a.sqlDB != nil {
		_ = a.sqlDB.Close()
	}
}
