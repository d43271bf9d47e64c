// Package demotest helps the examples' tests: a SQLite DSN in a temporary
// directory, the database servers the test environment names, and a
// thread-safe buffer to read a running example's output from.
package demotest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gormlock/lockmgr/examples/internal/demo"
)

// Server is a database server a test may also run an example against.
type Server struct {
	Kind string // "postgres" or "mysql"
	DSN  string // as the environment gives it
}

// Servers returns the servers named by LOCKMGR_TEST_POSTGRES_DSN and
// LOCKMGR_TEST_MYSQL_DSN, the variables the core's suite uses.
func Servers() []Server {
	var out []Server
	if dsn := os.Getenv("LOCKMGR_TEST_POSTGRES_DSN"); dsn != "" {
		out = append(out, Server{"postgres", dsn})
	}
	if dsn := os.Getenv("LOCKMGR_TEST_MYSQL_DSN"); dsn != "" {
		out = append(out, Server{"mysql", dsn})
	}
	return out
}

// SQLite returns the path of a SQLite file in a fresh temporary directory.
func SQLite(t testing.TB) string {
	return t.TempDir() + "/locks.db"
}

// UniqueName returns prefix followed by a random suffix, for tables on a
// shared server.
func UniqueName(prefix string) string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// DropTables drops tables on the database dsn names when the test ends.
func DropTables(t testing.TB, dsn string, tables ...string) {
	t.Cleanup(func() {
		db, err := demo.Open(dsn)
		if err != nil {
			t.Errorf("drop %v: %v", tables, err)
			return
		}
		defer db.Close()
		for _, table := range tables {
			if err := db.Migrator().DropTable(table, table+"_fence"); err != nil { // lockmgr's side table, if any
				t.Errorf("drop %s: %v", table, err)
			}
		}
	})
}

// Buffer is a bytes.Buffer safe for one writer and concurrent readers.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// WaitFor polls until the output contains s, and fails the test if it
// does not within d.
func (b *Buffer) WaitFor(t testing.TB, s string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(b.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the output after %s:\n%s", s, d, b.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
