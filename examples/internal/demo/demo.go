// Package demo holds what the lockmgr examples share and that is not about
// locking: opening the database a -dsn flag names, and printing lines from
// several goroutines without interleaving them.
package demo

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/gormlock/lockmgr/internal/dsn"
)

// DSNHelp describes the -dsn flag of every example.
const DSNHelp = `database, in any form lockmgr's CLI takes: a SQLite file path (or sqlite://path),
postgres://user@host/db?sslmode=disable, mysql://user:pass@host:3306/db, or user:pass@tcp(host:3306)/db`

// DB is an open database and a description of it that is safe to print.
type DB struct {
	*gorm.DB
	Where string // e.g. "sqlite://lockmgr-quickstart.db"
}

// Open opens the database text names, parsed as lockmgr's CLI parses its
// --dsn (a SQLite file is created if missing). GORM's own logging is off:
// the examples print what matters themselves.
func Open(text string) (*DB, error) {
	d, err := dsn.Parse(text, 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("-dsn: %w", err)
	}
	db, err := gorm.Open(d.Dialector(nil), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", d.Display, err)
	}
	return &DB{DB: db, Where: d.Display}, nil
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

// RunReplicas starts n copies of this program, named replica-1 … replica-n,
// each with the arguments args gives for its index (0-based) and name,
// relays what they print to p, and waits for all of them. It returns nil
// once ctx has ended (the replicas were interrupted), else their errors.
func RunReplicas(ctx context.Context, p *Printer, n int, args func(i int, name string) []string) error {
	var children []*Child
	for i := range n {
		name := fmt.Sprintf("replica-%d", i+1)
		child, err := StartChild(ctx, name, args(i, name), func(line string) { p.Printf("%s", line) })
		if err != nil {
			return err
		}
		children = append(children, child)
	}
	var errs []error
	for _, child := range children {
		errs = append(errs, child.Wait())
	}
	if ctx.Err() != nil {
		return nil
	}
	return errors.Join(errs...)
}
