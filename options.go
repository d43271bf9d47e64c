package lockmgr

import (
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"
)

// Defaults of the options that take a duration.
const (
	// DefaultExpires is how long a lock lasts unless Expires says otherwise
	// (django-lockmgr's 600 seconds).
	DefaultExpires = 600 * time.Second
	// DefaultScopeRenew is how much Scope.Renew adds unless Expires says
	// otherwise (django-lockmgr's LockMgr.renew: 120 seconds, add time).
	DefaultScopeRenew = 120 * time.Second
	// DefaultReleaseTimeout bounds the work lockmgr finishes on a caller's
	// behalf after the caller's context has ended (WithReleaseTimeout sets
	// it): the releases a scope makes when it ends, and an acquisition
	// statement already sent, with the release of what it took.
	DefaultReleaseTimeout = 10 * time.Second
)

// Option configures a Manager; pass options to New or NewPlugin.
type Option func(*settings) error

type settings struct {
	table    string
	owner    string
	logger   *slog.Logger
	hooks    Hooks
	notifier Notifier
	viaGORM  bool
	release  time.Duration
}

// WithTable makes the Manager use the named table instead of DefaultTable.
// The name may be schema-qualified ("locks.lockmgr_lock"); each part must
// be letters, digits and underscores.
func WithTable(name string) Option {
	return func(s *settings) error {
		if err := validateTable(name); err != nil {
			return err
		}
		s.table = name
		return nil
	}
}

// WithOwner sets the LockedBy the Manager writes when a call gives no
// LockedBy option. The default is os.Hostname().
func WithOwner(lockedBy string) Option {
	return func(s *settings) error {
		if err := validateLockedBy(lockedBy); err != nil {
			return err
		}
		s.owner = lockedBy
		return nil
	}
}

// WithLogger makes the Manager log acquisitions, releases and renewals at
// debug level, and lost locks and failed releases as warnings. By default
// nothing is logged.
func WithLogger(l *slog.Logger) Option {
	return func(s *settings) error {
		s.logger = l
		return nil
	}
}

// WithHooks installs lifecycle hooks, called after each acquisition,
// release, renewal, contention and lost lock. Unset hooks cost nothing.
func WithHooks(h Hooks) Option {
	return func(s *settings) error {
		s.hooks = h
		return nil
	}
}

// WithNotifier wakes this Manager's waiters when another process releases a
// name, and makes its releases announce themselves in the same statement.
// See package pgnotify for PostgreSQL's LISTEN/NOTIFY. Without it, waiters
// in other processes rely on backoff; waiters in this process are always
// woken at once.
func WithNotifier(n Notifier) Option {
	return func(s *settings) error {
		s.notifier = n
		return nil
	}
}

// WithGORMCallbacks runs lockmgr's statements through GORM's Raw and Exec,
// as db's other queries run, so that GORM's logger and plugins (tracing,
// metrics) see them. By default they go to db's connection pool (or
// transaction) directly, which saves about 50 allocations per lock cycle
// and, on SQLite, a fifth of its time. WithLogger and WithHooks report
// lockmgr's calls either way. When gorm.io/plugin/dbresolver is registered
// on db, its callbacks choose the database, so lockmgr takes GORM's path
// without being asked.
func WithGORMCallbacks() Option {
	return func(s *settings) error {
		s.viaGORM = true
		return nil
	}
}

// WithReleaseTimeout bounds the work the Manager finishes on a caller's
// behalf once the caller's context has ended (default
// DefaultReleaseTimeout): a scope's releases when it ends, and an
// acquisition statement already sent, which runs to its reply so that
// the lock it may have taken is known and released rather than left held
// by nobody. d must be positive.
func WithReleaseTimeout(d time.Duration) Option {
	return func(s *settings) error {
		if d <= 0 {
			return fmt.Errorf("%w: WithReleaseTimeout(%v) must be positive", ErrInvalidOption, d)
		}
		s.release = d
		return nil
	}
}

// LockOption tunes one call: GetLock, RenewLock, Renew, SetLock, Do,
// Acquire and the Scope's methods. An option the call has no use for
// (Fail given to GetLock, say) makes it return ErrInvalidOption naming
// the option, before any SQL runs.
type LockOption func(*lockConfig)

// optionSet records which options a call was given, by opt* bit.
type optionSet uint16

const (
	optExpires optionSet = 1 << iota
	optWait
	optLockedBy
	optProcess
	optAddTime
	optCreate
	optNoCreate
	optFail
	optNoRenew
	optNoKeepAlive
	optKeepAliveEvery
	optHoldAtLeast
)

var optionNames = []string{"Expires", "Wait", "LockedBy", "Process", "AddTime", "Create", "NoCreate",
	"Fail", "NoRenew", "NoKeepAlive", "KeepAliveEvery", "HoldAtLeast"}

// The options each kind of call accepts.
const (
	getLockOptions = optExpires | optWait | optLockedBy | optProcess | optHoldAtLeast
	releaseOptions = optHoldAtLeast
	scopeOptions   = getLockOptions | optNoKeepAlive | optKeepAliveEvery
	renewOptions   = optExpires | optAddTime | optCreate | optLockedBy | optProcess
	scopeRenewOpts = optExpires | optAddTime | optCreate | optNoCreate
	setLockOptions = optExpires | optLockedBy | optProcess | optFail | optNoRenew | optNoCreate
)

type lockConfig struct {
	expires        time.Duration
	expiresSet     bool
	wait           time.Duration
	lockedBy       *string
	process        *int64
	addTime        *bool
	create         *bool
	fail           bool
	noRenew        bool
	noKeepAlive    bool
	keepAliveEvery time.Duration
	hold           time.Duration // HoldAtLeast
	given          optionSet
	err            error
}

// Expires sets how long the lock lasts from now: default DefaultExpires;
// 0 means it never expires. A negative d is ErrInvalidOption. Sub-microsecond
// parts round up to a microsecond.
func Expires(d time.Duration) LockOption {
	return func(c *lockConfig) {
		c.check(d >= 0, "Expires(%v) is negative", d)
		c.expires, c.expiresSet, c.given = d, true, c.given|optExpires
	}
}

// NoExpiry makes the lock never expire; the same as Expires(0).
func NoExpiry() LockOption { return Expires(0) }

// Wait makes an acquisition retry for up to d while the name is held, with
// backoff and jitter, waking early when a release is seen. A negative d is
// ErrInvalidOption.
func Wait(d time.Duration) LockOption {
	return func(c *lockConfig) {
		c.check(d >= 0, "Wait(%v) is negative", d)
		c.wait, c.given = d, c.given|optWait
	}
}

// LockedBy sets who the lock is recorded as held by (at most 255 bytes).
func LockedBy(s string) LockOption {
	return func(c *lockConfig) {
		if err := validateLockedBy(s); err != nil && c.err == nil {
			c.err = err
		}
		c.lockedBy, c.given = &s, c.given|optLockedBy
	}
}

// Process sets the process id recorded with the lock (default
// os.Getpid()); 0 records none (NULL), as django-lockmgr does by default.
func Process(pid int64) LockOption {
	return func(c *lockConfig) { c.process, c.given = &pid, c.given|optProcess }
}

// AddTime makes a renewal add the duration to the current expiry instead
// of setting it to max(current, now+duration).
func AddTime() LockOption {
	return func(c *lockConfig) { t := true; c.addTime, c.given = &t, c.given|optAddTime }
}

// Create makes a renewal of an absent or expired lock create it instead of
// failing with ErrLockNotFound or ErrNotHeld.
func Create() LockOption {
	return func(c *lockConfig) { t := true; c.create, c.given = &t, c.given|optCreate }
}

// NoCreate makes SetLock skip free names, and Scope.Renew fail instead of
// re-creating a lock that was lost.
func NoCreate() LockOption {
	return func(c *lockConfig) { f := false; c.create, c.given = &f, c.given|optNoCreate }
}

// Fail makes SetLock roll back everything and return *LockFail on the first
// held name.
func Fail() LockOption {
	return func(c *lockConfig) { c.fail, c.given = true, c.given|optFail }
}

// NoRenew makes SetLock leave held names as they are ("skip").
func NoRenew() LockOption {
	return func(c *lockConfig) { c.noRenew, c.given = true, c.given|optNoRenew }
}

// NoKeepAlive stops a scope from renewing its main lock in the background,
// as django-lockmgr's LockMgr does not.
func NoKeepAlive() LockOption {
	return func(c *lockConfig) { c.noKeepAlive, c.given = true, c.given|optNoKeepAlive }
}

// KeepAliveEvery sets how often a scope renews its main lock; the default is
// a third of its expiry. d must be positive.
func KeepAliveEvery(d time.Duration) LockOption {
	return func(c *lockConfig) {
		c.check(d > 0, "KeepAliveEvery(%v) must be positive", d)
		c.keepAliveEvery, c.given = d, c.given|optKeepAliveEvery
	}
}

// HoldAtLeast keeps a lock held for at least d after its acquisition,
// however early it is released (ShedLock's lockAtLeastFor): a Release, a
// Scope's Unlock or its end before d has passed, by the database's clock
// (the row's created_at against the database's now), leaves the lock held
// until acquisition + d, with its token, instead of deleting it; waiters are
// not woken for it, and take the lock once it expires. After d a release
// deletes the row as it always does. Given to GetLock, Acquire, Do or
// Scope.Lock, the returned lock (and its copies) remembers d for its
// release; given to Release it applies there, in place of what the lock
// remembers. The expiry a release sets is acquisition + d, also when the
// lock's own expiry was sooner or later. On SQLite, whose date functions
// work in milliseconds, the hold is rounded up to the next millisecond.
// A negative d is ErrInvalidOption; 0 releases at once.
func HoldAtLeast(d time.Duration) LockOption {
	return func(c *lockConfig) {
		c.check(d >= 0, "HoldAtLeast(%v) is negative", d)
		c.hold, c.given = d, c.given|optHoldAtLeast
	}
}

func (c *lockConfig) check(ok bool, format string, args ...any) {
	if !ok && c.err == nil {
		c.err = fmt.Errorf("%w: "+format, append([]any{ErrInvalidOption}, args...)...)
	}
}

// newLockConfig applies opts for call, which accepts the options in
// allowed; any other is ErrInvalidOption.
func newLockConfig(call string, allowed optionSet, opts []LockOption) (lockConfig, error) {
	c := lockConfig{expires: DefaultExpires}
	return c, c.apply(call, allowed, opts)
}

func (c *lockConfig) apply(call string, allowed optionSet, opts []LockOption) error {
	for _, o := range opts {
		if o == nil {
			return fmt.Errorf("%w: nil LockOption", ErrInvalidOption)
		}
		o(c)
	}
	if c.err != nil {
		return c.err
	}
	if extra := c.given &^ allowed; extra != 0 {
		for i, name := range optionNames {
			if extra&(1<<i) != 0 {
				return fmt.Errorf("%w: %s does not take %s()", ErrInvalidOption, call, name)
			}
		}
	}
	return nil
}

func flag(p *bool, def bool) bool {
	if p == nil {
		return def
	}
	return *p
}

func validateLockedBy(s string) error {
	switch {
	case len(s) > MaxNameLen:
		return fmt.Errorf("%w: LockedBy is %d bytes, the limit is %d", ErrInvalidOption, len(s), MaxNameLen)
	case !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0:
		return fmt.Errorf("%w: LockedBy %q must be UTF-8 without NUL", ErrInvalidOption, s)
	}
	return nil
}

func validateTable(name string) error {
	parts := strings.Split(name, ".")
	if len(parts) > 2 {
		return fmt.Errorf("%w: table %q has more than one dot", ErrInvalidOption, name)
	}
	for _, p := range parts {
		if p == "" || len(p) > 63 || strings.IndexFunc(p, notIdentRune) >= 0 || (p[0] >= '0' && p[0] <= '9') {
			return fmt.Errorf("%w: table %q must be letters, digits and underscores (at most 63 per part)", ErrInvalidOption, name)
		}
	}
	return nil
}

func notIdentRune(r rune) bool {
	return !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
}
