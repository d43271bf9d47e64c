package engine

// Arg is one of the values a statement binds, written @name in its text.
type Arg int

// The values statements bind. Package lockmgr fills them per call.
const (
	ArgName    Arg = iota
	ArgBy          // locked_by
	ArgPid         // lock_process
	ArgMicros      // expiry in microseconds; nil: never (PostgreSQL, MySQL)
	ArgUntil       // now+expiry as UTC text; nil: never (SQLite)
	ArgToken       // owner token
	ArgFence       // now in microseconds, the fence floor (SQLite)
	ArgNow         // now as UTC text (SQLite)
	ArgChannel     // NOTIFY channel (PostgreSQL)
	ArgOld         // the expiry a compare-and-set expects (SQLite)
	ArgOrigin      // this process's NOTIFY payload prefix
	ArgLazy        // a release may commit without waiting for the disk (PostgreSQL)
	ArgBounded     // the statement gives up lock waits after the bound (PostgreSQL)
	ArgAfter       // the last name of the previous page (List)
	ArgLimit       // rows in a page (List)
	ArgHold        // HoldAtLeast in microseconds (ReleaseHold)
	ArgSlots       // a semaphore's number of slots
	ArgMarker      // a semaphore's marker row
	NumArgs
)

// ArgNames maps each @name of a statement's text to its Arg.
var ArgNames = map[string]Arg{
	"name": ArgName, "by": ArgBy, "pid": ArgPid, "micros": ArgMicros, "until": ArgUntil,
	"token": ArgToken, "fence": ArgFence, "now": ArgNow, "channel": ArgChannel, "old": ArgOld,
	"origin": ArgOrigin, "lazy": ArgLazy, "bounded": ArgBounded, "after": ArgAfter, "limit": ArgLimit,
	"hold": ArgHold, "slots": ArgSlots, "marker": ArgMarker,
}
