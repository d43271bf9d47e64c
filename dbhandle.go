package lockmgr

import (
	"context"
	crand "crypto/rand"
	"database/sql"
	"encoding/hex"
	"runtime"
	"sync"
	"weak"
)

// A dbHandle is what this process keeps for one database handle (*sql.DB)
// that Managers run lock statements on: the statements prepared on it
// (prepared.go) and the mark of its release notices (originOf). Every
// Manager on the handle shares it, and so do the process's waiter queues,
// which it keys (wait.go).
//
// The registry finds a handle's dbHandle without keeping either alive:
// once the *sql.DB and the Managers on it are unreachable (a program that
// opens and closes a handle per tenant, per test, per reconnect), the
// garbage collector drops the entry and its prepared statements are
// closed. Nothing is dropped while a Manager on the handle remains.
type dbHandle struct {
	origin string
	stmts  *stmtSet
}

// stmtSet is one handle's prepared statements, by SQL text.
type stmtSet struct{ m sync.Map } // string → *sql.Stmt

var handles = struct {
	mu sync.Mutex
	m  map[weak.Pointer[sql.DB]]weak.Pointer[dbHandle]
}{m: map[weak.Pointer[sql.DB]]weak.Pointer[dbHandle]{}}

// handleOf returns db's dbHandle, making it on first use.
func handleOf(db *sql.DB) *dbHandle {
	key := weak.Make(db)
	handles.mu.Lock()
	defer handles.mu.Unlock()
	if h := handles.m[key].Value(); h != nil {
		return h
	}
	h := newHandle()
	self := weak.Make(h)
	handles.m[key] = self
	runtime.AddCleanup(h, dropHandle, handleEntry{key: key, self: self, stmts: h.stmts})
	return h
}

// newHandle is a dbHandle with a fresh notice mark, shared by nobody yet.
func newHandle() *dbHandle {
	var b [8]byte
	_, _ = crand.Read(b[:])
	return &dbHandle{origin: "\x1e" + hex.EncodeToString(b[:]) + "\x1e", stmts: &stmtSet{}}
}

// handleEntry is what dropHandle needs of a dbHandle gone unreachable.
type handleEntry struct {
	key   weak.Pointer[sql.DB]
	self  weak.Pointer[dbHandle]
	stmts *stmtSet
}

// dropHandle removes a collected dbHandle from the registry (unless a new
// one has taken its place) and closes its statements: on a closed *sql.DB
// that is a no-op, on an open one it frees them on the server.
func dropHandle(e handleEntry) {
	handles.mu.Lock()
	if handles.m[e.key] == e.self {
		delete(handles.m, e.key)
	}
	handles.mu.Unlock()
	// A statement's Close waits for each connection it was prepared on to
	// be free: not on the runtime's cleanup goroutine, which other
	// cleanups share.
	go e.stmts.m.Range(func(_, s any) bool {
		_ = s.(*sql.Stmt).Close()
		return true
	})
}

// get returns query prepared on db, preparing it once; nil when it cannot
// be prepared.
func (c *stmtSet) get(ctx context.Context, db *sql.DB, query string) *sql.Stmt {
	if s, ok := c.m.Load(query); ok {
		return s.(*sql.Stmt)
	}
	s, err := db.PrepareContext(ctx, query)
	if err != nil {
		return nil // run it unprepared; the error, if real, shows there
	}
	if prev, loaded := c.m.LoadOrStore(query, s); loaded {
		_ = s.Close()
		return prev.(*sql.Stmt)
	}
	return s
}
