package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/gormlock/lockmgr/internal/dsn"
)

// binPath is the lockmgr binary TestMain builds once for every test.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lockmgr-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "lockmgr")
	if out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building lockmgr: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// testDB is one database the tests run against.
type testDB struct{ name, dsn string }

// eachDB runs fn as a parallel subtest against SQLite and every database
// configured through LOCKMGR_TEST_POSTGRES_DSN and LOCKMGR_TEST_MYSQL_DSN.
func eachDB(t *testing.T, fn func(t *testing.T, c *cli)) {
	t.Parallel()
	dbs := []testDB{{"sqlite", "sqlite://" + filepath.Join(t.TempDir(), "locks.db")}}
	if dsn := os.Getenv("LOCKMGR_TEST_POSTGRES_DSN"); dsn != "" {
		dbs = append(dbs, testDB{"postgres", dsn})
	}
	if dsn := os.Getenv("LOCKMGR_TEST_MYSQL_DSN"); dsn != "" {
		dbs = append(dbs, testDB{"mysql", dsn})
	}
	for _, db := range dbs {
		t.Run(db.name, func(t *testing.T) {
			t.Parallel()
			c := newCLI(t, db)
			c.ok("migrate")
			fn(t, c)
		})
	}
}

// cli runs the lockmgr binary against one database and table, passed
// through LOCKMGR_DSN and LOCKMGR_TABLE as an operator would set them.
type cli struct {
	t     *testing.T
	db    testDB
	table string
	dir   string // working directory, also for files the commands write
}

// result is what one lockmgr run printed and its exit status.
type result struct {
	stdout, stderr string
	code           int
}

// newCLI gives t its own table in db, dropped when t ends.
func newCLI(t *testing.T, db testDB) *cli {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	c := &cli{t: t, db: db, table: "lockmgr_cli_" + hex.EncodeToString(b), dir: t.TempDir()}
	t.Cleanup(func() { dropTable(t, db.dsn, c.table) })
	return c
}

// dropTable removes table from the database at dsn.
func dropTable(t *testing.T, dsnText, table string) {
	dbi, err := dsn.Parse(dsnText, 5*time.Second)
	require.NoError(t, err)
	sqlDB, err := sql.Open(dbi.Driver, dbi.DSN)
	require.NoError(t, err)
	defer func() { _ = sqlDB.Close() }()
	db, err := gorm.Open(dbi.Dialector(sqlDB), &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	require.NoError(t, db.Migrator().DropTable(table, table+"_fence"))
}

// env is the environment every lockmgr process of c gets.
func (c *cli) env() []string {
	return append(os.Environ(), "LOCKMGR_DSN="+c.db.dsn, "LOCKMGR_TABLE="+c.table, "LOCKMGR_BIN="+binPath)
}

// command prepares lockmgr with args; it is killed if it outlives the test's patience.
func (c *cli) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Env = c.env()
	cmd.Dir = c.dir
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// runIn runs lockmgr with args and stdin and returns what it did.
func (c *cli) runIn(stdin string, args ...string) result {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := c.command(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		c.t.Fatalf("running lockmgr %q: %v", args, err)
	}
	return result{stdout: stdout.String(), stderr: stderr.String(), code: cmd.ProcessState.ExitCode()}
}

// run runs lockmgr with args and no input.
func (c *cli) run(args ...string) result {
	c.t.Helper()
	return c.runIn("", args...)
}

// ok runs lockmgr with args, requires exit status 0 and returns stdout.
func (c *cli) ok(args ...string) string {
	c.t.Helper()
	r := c.run(args...)
	require.Equal(c.t, 0, r.code, "lockmgr %q: stdout %q, stderr %q", args, r.stdout, r.stderr)
	return r.stdout
}

// listJSON returns the live locks, by name.
func (c *cli) listJSON() map[string]lockJSON {
	c.t.Helper()
	var out struct {
		Count int        `json:"count"`
		Locks []lockJSON `json:"locks"`
	}
	require.NoError(c.t, json.Unmarshal([]byte(c.ok("list", "--json")), &out))
	locks := make(map[string]lockJSON, len(out.Locks))
	for _, l := range out.Locks {
		locks[l.Name] = l
	}
	require.Len(c.t, locks, out.Count)
	return locks
}

// proc is a lockmgr process running in the background.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	lines  chan string // stdout, line by line
	stderr bytes.Buffer
	mu     sync.Mutex
	out    []string
	done   chan struct{}
	code   int
}

// start runs lockmgr with args in the background; the test waits for it
// at the end.
func (c *cli) start(args ...string) *proc {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	p := &proc{t: c.t, cmd: c.command(ctx, args...), lines: make(chan string, 100), done: make(chan struct{})}
	stdout, err := p.cmd.StdoutPipe()
	require.NoError(c.t, err)
	p.cmd.Stderr = &p.stderr
	require.NoError(c.t, p.cmd.Start())
	go p.read(stdout)
	go func() {
		defer cancel()
		<-p.done
	}()
	c.t.Cleanup(func() { _ = p.cmd.Process.Kill(); p.wait(10 * time.Second) })
	return p
}

// read collects stdout lines, then reaps the process.
func (p *proc) read(r io.Reader) {
	s := bufio.NewScanner(r)
	for s.Scan() {
		line := strings.TrimSuffix(s.Text(), "\r") // a terminal's line ends
		p.mu.Lock()
		p.out = append(p.out, line)
		p.mu.Unlock()
		p.lines <- line
	}
	_ = p.cmd.Wait()
	p.code = p.cmd.ProcessState.ExitCode()
	close(p.done)
}

// waitLine waits until the process prints want on a line of its own.
func (p *proc) waitLine(want string) {
	p.t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case line := <-p.lines:
			if line == want {
				return
			}
		case <-p.done:
			p.t.Fatalf("lockmgr exited with %d before printing %q; stdout %q, stderr %q", p.code, want, p.stdout(), p.stderr.String())
		case <-timeout:
			p.t.Fatalf("lockmgr did not print %q in 30s", want)
		}
	}
}

// wait waits up to d for the process to exit and returns its status.
func (p *proc) wait(d time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(d):
		p.t.Fatalf("lockmgr still running after %v", d)
		return -1
	}
}

// stdout is everything the process printed on stdout so far.
func (p *proc) stdout() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.out, "\n")
}
