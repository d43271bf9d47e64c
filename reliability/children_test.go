package reliability

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/gormlock/lockmgr"
)

// child is a worker process: the test binary re-executed with a role.
type child struct {
	cmd    *exec.Cmd
	stdout io.ReadCloser
	stderr *syncBuffer
}

// startChild starts the test binary as a worker process running role with
// cfg; the process is killed when ctx ends or the test is cleaned up.
func startChild(ctx context.Context, t *testing.T, role string, cfg any) *child {
	t.Helper()
	raw, err := json.Marshal(cfg)
	require.NoError(t, err)
	cmd := exec.CommandContext(ctx, os.Args[0])
	cmd.Env = append(os.Environ(), envChild+"="+role, envConfig+"="+string(raw))
	c := &child{cmd: cmd, stderr: &syncBuffer{}}
	cmd.Stderr = c.stderr
	c.stdout, err = cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return c
}

// syncBuffer is a bytes.Buffer safe for a process writer and a test reader.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// decodeConfig parses a child's JSON config.
func decodeConfig(raw string, v any) error {
	return json.Unmarshal([]byte(raw), v)
}

// childTarget is the database and lock table a worker process uses.
type childTarget struct{ Driver, DSN, LockTable string }

// openChild decodes a worker's JSON config into cfg and opens a Manager on
// the database and table that t (a part of cfg) names. A failure is
// printed, and code is the worker's exit code then (2), else 0.
func openChild(raw string, cfg any, t *childTarget) (m *lockmgr.Manager, db *gorm.DB, code int) {
	if err := decodeConfig(raw, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "config:", err)
		return nil, nil, 2
	}
	db, err := openDB(t.Driver, t.DSN)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return nil, nil, 2
	}
	if m, err = lockmgr.New(db, lockmgr.WithTable(t.LockTable)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return nil, nil, 2
	}
	return m, db, 0
}
