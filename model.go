package lockmgr

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"gorm.io/gorm"
)

// DefaultTable is the lock table's name unless WithTable says otherwise.
// It is django-lockmgr's own, so both libraries can share one table.
const DefaultTable = "lockmgr_lock"

// MaxNameLen is the longest lock name, in bytes.
const MaxNameLen = 255

// Lock is one row of the lock table, and a GORM model:
// db.AutoMigrate(&Lock{}) creates the default table, and a Manager's first
// call completes what GORM leaves out (a side table and triggers for
// fences, a byte-exact name on MySQL/MariaDB; see Manager.AutoMigrate). A
// Lock returned by a Manager is a snapshot; its Token proves ownership to
// Release and Renew.
type Lock struct {
	// Name identifies the lock: 1..255 bytes of UTF-8 without NUL, compared
	// byte for byte.
	Name string `gorm:"column:name;primaryKey;size:255;not null"`
	// LockedBy says who holds the lock; it defaults to os.Hostname().
	LockedBy string `gorm:"column:locked_by;size:255"`
	// LockProcess is the holder's process id; it defaults to os.Getpid().
	LockProcess *int64 `gorm:"column:lock_process"`
	// LockedUntil is when the lock expires, judged by the database's clock;
	// nil means never.
	LockedUntil *time.Time `gorm:"column:locked_until;index;precision:6"`
	// Token is a random owner token, new on every acquisition.
	Token string `gorm:"column:token;size:64;not null;default:''"`
	// Fence grows with every acquisition of Name, also across deletions of
	// the row: pass it to a storage system to reject writes from a holder
	// whose lock has since been taken over.
	Fence int64 `gorm:"column:fence;not null;default:0"`
	// CreatedAt is when this acquisition happened.
	CreatedAt time.Time `gorm:"column:created_at;precision:6"`
	// UpdatedAt is when the lock was last written (acquired or renewed).
	UpdatedAt time.Time `gorm:"column:updated_at;precision:6"`

	// holdAtLeast is the HoldAtLeast its acquisition was given, which its
	// release honours (release.go); not a column.
	holdAtLeast time.Duration
}

// TableName is DefaultTable; a Manager built WithTable uses its own table.
func (Lock) TableName() string { return DefaultTable }

// Expired reports whether the lock's expiry has passed by this process's
// clock: false when LockedUntil is nil, true once LockedUntil <= now.
func (l *Lock) Expired() bool {
	return l.LockedUntil != nil && !time.Now().Before(*l.LockedUntil)
}

// ExpiresIn returns the time left until the lock expires, negative once it
// has. The bool is false when the lock never expires.
func (l *Lock) ExpiresIn() (time.Duration, bool) {
	if l.LockedUntil == nil {
		return 0, false
	}
	return time.Until(*l.LockedUntil), true
}

// ExpiresSeconds is ExpiresIn in whole seconds, truncated toward zero:
// 79.99 s left gives 79, and a lock expired 0.5 s ago gives 0 (1.5 s ago:
// -1). django-lockmgr's expires_seconds is documented as integer seconds
// and its docs show 79 for 79.99, but it returns the float
// total_seconds(); use ExpiresIn for the fraction. The bool is false when
// the lock never expires.
func (l *Lock) ExpiresSeconds() (int64, bool) {
	d, ok := l.ExpiresIn()
	return int64(d / time.Second), ok
}

// String renders the lock as django-lockmgr does:
// <Lock name='hello' locked_by='example.org' locked_until='2019-11-22 02:01:55.439390+00:00'>.
func (l *Lock) String() string {
	if l == nil {
		return "<Lock nil>"
	}
	return fmt.Sprintf("<Lock name='%s' locked_by='%s' locked_until='%s'>",
		l.Name, l.LockedBy, FormatTime(l.LockedUntil))
}

// FormatTime renders t as Python renders an aware UTC datetime
// ("2019-11-22 02:01:55.439390+00:00", no fraction when it is zero), and
// nil as "None".
func FormatTime(t *time.Time) string {
	if t == nil {
		return "None"
	}
	u := t.UTC()
	if u.Nanosecond()/1000 == 0 {
		return u.Format("2006-01-02 15:04:05") + "+00:00"
	}
	return u.Format("2006-01-02 15:04:05.000000") + "+00:00"
}

// ValidateName returns nil for a usable lock name, else an error wrapping
// ErrInvalidName that says what is wrong with it.
func ValidateName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty", ErrInvalidName)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrInvalidName, len(name), MaxNameLen)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: %q is not valid UTF-8", ErrInvalidName, name)
	case strings.IndexByte(name, 0) >= 0:
		return fmt.Errorf("%w: %q contains NUL", ErrInvalidName, name)
	}
	return nil
}

var hostname = sync.OnceValue(func() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "unknown"
	}
	if len(h) > MaxNameLen {
		h = h[:MaxNameLen]
	}
	return h
})

var processID = int64(os.Getpid())

// newToken returns 32 hex digits of crypto randomness.
func newToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// BeforeSave is a GORM hook: a Lock saved through GORM directly (db.Save,
// db.Create) must have a valid name.
func (l *Lock) BeforeSave(*gorm.DB) error {
	if err := ValidateName(l.Name); err != nil {
		return err
	}
	return validateLockedBy(l.LockedBy)
}

// BeforeCreate is a GORM hook giving a Lock created directly with
// db.Create the defaults a Manager would: LockedBy (hostname), LockProcess
// (pid), Token and Fence; LockedUntil is stored in UTC, as the lock
// functions compare it.
func (l *Lock) BeforeCreate(*gorm.DB) error {
	if l.LockedBy == "" {
		l.LockedBy = hostname()
	}
	if l.LockProcess == nil {
		pid := processID
		l.LockProcess = &pid
	}
	if l.Token == "" {
		l.Token = newToken()
	}
	if l.Fence == 0 {
		l.Fence = time.Now().UnixMicro()
	}
	if l.LockedUntil != nil {
		u := l.LockedUntil.UTC()
		l.LockedUntil = &u
	}
	return nil
}
