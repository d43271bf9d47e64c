// Package demo holds what the lockmgr examples share and that is not about
// locking: opening the database a -dsn flag names, and printing lines from
// several goroutines without interleaving them.
package demo

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
	gormmysql "gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// DSNHelp describes the -dsn flag of every example.
const DSNHelp = `database: a SQLite file path, postgres://user@host/db?sslmode=disable,
or user:pass@tcp(host:3306)/db?parseTime=true for MariaDB 10.5+`

// SQLiteParams are the mattn/go-sqlite3 settings lockmgr recommends: wait
// up to 10 s for another connection's write lock instead of failing with
// "database is locked", and let readers run beside the writer (WAL).
const SQLiteParams = "_busy_timeout=10000&_journal_mode=WAL"

// DB is an open database and a description of it that is safe to print.
type DB struct {
	*gorm.DB
	Kind  string // "sqlite", "postgres" or "mysql"
	Where string // e.g. "SQLite file lockmgr-quickstart.db"
}

// Open opens dsn: a postgres:// or postgresql:// URL, a go-sql-driver MySQL
// DSN (user:pass@tcp(host:3306)/db), or else a SQLite file, created if
// missing, with SQLiteParams unless the DSN has parameters of its own.
// GORM's own logging is off: the examples print what matters themselves.
func Open(dsn string) (*DB, error) {
	cfg := &gorm.Config{Logger: logger.Discard}
	var d gorm.Dialector
	out := &DB{}
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		u, err := url.Parse(dsn)
		if err != nil {
			return nil, fmt.Errorf("-dsn: %w", err)
		}
		d, out.Kind, out.Where = postgres.Open(dsn), "postgres", "PostgreSQL "+u.Redacted()
	case strings.Contains(dsn, "@tcp(") || strings.Contains(dsn, "@unix("):
		c, err := mysql.ParseDSN(dsn)
		if err != nil {
			return nil, fmt.Errorf("-dsn: %w", err)
		}
		c.ParseTime = true // lockmgr reads DATETIME columns as time.Time
		d, out.Kind = gormmysql.Open(c.FormatDSN()), "mysql"
		out.Where = fmt.Sprintf("MySQL/MariaDB %s@%s/%s", c.User, c.Addr, c.DBName)
	default:
		file, params, _ := strings.Cut(strings.TrimPrefix(dsn, "file:"), "?")
		if file == "" {
			return nil, fmt.Errorf("-dsn: no SQLite file name in %q", dsn)
		}
		if params == "" {
			params = SQLiteParams
		}
		d, out.Kind, out.Where = sqlite.Open("file:"+file+"?"+params), "sqlite", "SQLite file "+file
	}
	db, err := gorm.Open(d, cfg)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", out.Where, err)
	}
	out.DB = db
	return out, nil
}

// Close closes the connection pool.
func (db *DB) Close() error {
	s, err := db.DB.DB()
	if err != nil {
		return err
	}
	return s.Close()
}

// Printer writes whole lines to an io.Writer from any goroutine.
type Printer struct {
	mu    sync.Mutex
	w     io.Writer
	stamp bool
}

// NewPrinter returns a Printer writing to w; with stamp, each line starts
// with the wall-clock time.
func NewPrinter(w io.Writer, stamp bool) *Printer {
	return &Printer{w: w, stamp: stamp}
}

// Printf writes one line (a newline is added).
func (p *Printer) Printf(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	if p.stamp {
		line = time.Now().Format("15:04:05.000") + "  " + line
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintln(p.w, line)
}

// Write writes b as it is, so a Printer can be a log or slog destination.
func (p *Printer) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.w.Write(b)
}

// ChildEnv is set in the environment of the replicas StartChild starts.
// The examples' tests check it in TestMain to run their own test binary
// as a replica.
const ChildEnv = "LOCKMGR_EXAMPLE_CHILD"

// Child is a copy of this program, started as one replica of an example.
type Child struct {
	Name string    // the replica's name, for messages
	Cmd  *exec.Cmd // the running process
	done chan struct{}
	err  error
}

// StartChild starts this program's executable with args, passing each
// line it prints to line. When ctx ends the child gets an interrupt (and
// is killed 5 s later if it is still running).
func StartChild(ctx context.Context, name string, args []string, line func(string)) (*Child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = append(os.Environ(), ChildEnv+"=1")
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 5 * time.Second
	r, w := io.Pipe()
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &Child{Name: name, Cmd: cmd, done: make(chan struct{})}
	relayed := make(chan struct{})
	go func() {
		defer close(relayed)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			line(sc.Text())
		}
		_, _ = io.Copy(io.Discard, r)
	}()
	go func() {
		err := cmd.Wait()
		_ = w.Close()
		<-relayed
		if err != nil {
			c.err = fmt.Errorf("%s: %w", name, err)
		}
		close(c.done)
	}()
	return c, nil
}

// Wait waits for the child to exit and returns its error, if any.
func (c *Child) Wait() error {
	<-c.done
	return c.err
}

// Done is closed when the child has exited.
func (c *Child) Done() <-chan struct{} { return c.done }
