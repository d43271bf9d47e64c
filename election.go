package lockmgr

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// DefaultTTL is how long a leader's lock lasts unless TTL says otherwise;
// the leader renews it every third of that.
const DefaultTTL = 15 * time.Second

// minTTL is the shortest TTL an Election accepts.
const minTTL = 30 * time.Millisecond

// ErrNoLeader reports that an election has no leader now: its lock is
// absent or expired by the database's clock.
var ErrNoLeader = errors.New("lockmgr: no leader")

// Term is one leader's time in office: who leads, the fence of its lock
// (it grows with every term, so a write carrying it can be refused once a
// newer term exists) and when the term began, by the database's clock. The
// zero Term means no leader.
type Term struct {
	Identity string
	Fence    int64
	Since    time.Time
}

// same reports whether t and o are one term.
func (t Term) same(o Term) bool { return t.Fence == o.Fence && t.Identity == o.Identity }

// ElectionOption configures an Election; pass options to NewElection.
type ElectionOption func(*electionConfig)

type electionConfig struct {
	identity *string
	ttl      time.Duration
	err      error
}

// Identity sets who this member is recorded as while it leads (the lock's
// LockedBy; at most 255 bytes of UTF-8 without NUL). The default is the
// Manager's owner (WithOwner, else the host name) and the process id.
func Identity(id string) ElectionOption {
	return func(c *electionConfig) {
		if id == "" && c.err == nil {
			c.err = fmt.Errorf("%w: Identity is empty", ErrInvalidOption)
		}
		if err := validateLockedBy(id); err != nil && c.err == nil {
			c.err = fmt.Errorf("%w (Identity)", err)
		}
		c.identity = &id
	}
}

// TTL sets how long a leader's lock lasts without renewal (DefaultTTL
// unless given; at least 30 ms). The leader renews it every third of d,
// and its lead context is cancelled once no renewal has succeeded for
// four fifths of d; a crashed leader is replaced within about d.
func TTL(d time.Duration) ElectionOption {
	return func(c *electionConfig) {
		if d < minTTL && c.err == nil {
			c.err = fmt.Errorf("%w: TTL(%v) is shorter than %v", ErrInvalidOption, d, minTTL)
		}
		c.ttl = d
	}
}

// Election elects one leader among the members that Run it on the same
// name and table, in any number of processes. Each member is one Election
// value; its methods are safe for concurrent use.
type Election struct {
	m        *Manager
	name     string
	identity string
	ttl      time.Duration

	mu      sync.Mutex
	running bool
	term    *term // the term this member leads now; nil when it does not
}

// term is a term this member leads.
type term struct {
	t        Term
	scope    *Scope
	done     chan struct{} // closed once lead has returned and the lock is released
	resigned bool
}

// NewElection returns a member of the election held on the lock name of
// m's table. It runs no SQL; it returns ErrInvalidName for a bad name and
// ErrInvalidOption for a nil Manager, a Manager bound to a transaction
// (WithTx), or a bad option.
func NewElection(m *Manager, name string, opts ...ElectionOption) (*Election, error) {
	if m == nil {
		return nil, fmt.Errorf("%w: NewElection: nil Manager", ErrInvalidOption)
	}
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	c := electionConfig{ttl: DefaultTTL}
	for _, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("%w: nil ElectionOption", ErrInvalidOption)
		}
		o(&c)
	}
	if c.err != nil {
		return nil, c.err
	}
	if m.err == nil && m.inCallerTx() {
		return nil, fmt.Errorf("%w: an Election cannot run inside the caller's transaction (WithTx)", ErrInvalidOption)
	}
	id := m.owner + ":" + strconv.FormatInt(processID, 10)
	if c.identity != nil {
		id = *c.identity
	}
	if err := validateLockedBy(id); err != nil {
		return nil, fmt.Errorf("%w (the default Identity, owner and pid: set Identity)", err)
	}
	return &Election{m: m, name: name, identity: id, ttl: c.ttl}, nil
}

// Name is the name of the election's lock.
func (e *Election) Name() string { return e.name }

// Identity is who this member is recorded as while it leads.
func (e *Election) Identity() string { return e.identity }

// Leading reports the term this member leads now, without a query: false
// when it does not lead, has resigned, or its lock is lost or in doubt
// (past its safe deadline, by the monotonic clock). Unlike lead's context,
// it stays true while lead finishes its work after Run's context ended
// (the lock is still held then) and turns false if the lock is lost
// meanwhile: a lead that drains at shutdown checks it before each write.
func (e *Election) Leading() (Term, bool) {
	e.mu.Lock()
	ts := e.term
	resigned := ts != nil && ts.resigned
	e.mu.Unlock()
	if ts == nil || resigned || !ts.scope.holds() {
		return Term{}, false
	}
	return ts.t, true
}
