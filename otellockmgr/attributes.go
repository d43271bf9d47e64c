package otellockmgr

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"gorm.io/gorm"

	"github.com/gormlock/lockmgr"
)

// version is this module's, for the instrumentation scope.
const version = "0.1.0"

// Attribute keys: OpenTelemetry's database ones, and the lock's own under
// lockmgr.
const (
	// AttrSystem is the database: postgresql, mysql, mariadb or sqlite.
	AttrSystem = attribute.Key("db.system.name")
	// AttrOperation is the lock operation: acquire, release, unlock,
	// renew, renew_lock or keep_alive (see lockmgr.Hooks.OnStart).
	AttrOperation = attribute.Key("db.operation.name")
	// AttrTable is the lock table (lockmgr.Manager.Table).
	AttrTable = attribute.Key("db.collection.name")
	// AttrErrorType is the class of a failed operation's error: one of the
	// Outcome values, or _OTHER.
	AttrErrorType = attribute.Key("error.type")
	// AttrLockName is the lock's name (spans only: names can be many).
	AttrLockName = attribute.Key("lockmgr.lock.name")
	// AttrFence is the fencing token of the lock the operation ended with.
	AttrFence = attribute.Key("lockmgr.lock.fence")
	// AttrOwner is the lock's LockedBy.
	AttrOwner = attribute.Key("lockmgr.lock.owner")
	// AttrOutcome is how the operation ended: one of the Outcome values.
	AttrOutcome = attribute.Key("lockmgr.outcome")
)

// The values of AttrOutcome.
const (
	OutcomeOK       = "ok"
	OutcomeLocked   = "locked"    // lockmgr.ErrLocked: the name was held
	OutcomeNotHeld  = "not_held"  // lockmgr.ErrNotHeld: the lock was lost
	OutcomeNotFound = "not_found" // lockmgr.ErrLockNotFound
	OutcomeCanceled = "canceled"  // the caller's context ended
	OutcomeError    = "error"     // any other error
)

func outcome(err error) string {
	switch {
	case err == nil:
		return OutcomeOK
	case errors.Is(err, lockmgr.ErrLocked):
		return OutcomeLocked
	case errors.Is(err, lockmgr.ErrNotHeld):
		return OutcomeNotHeld
	case errors.Is(err, lockmgr.ErrLockNotFound):
		return OutcomeNotFound
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return OutcomeCanceled
	}
	return OutcomeError
}

func errorType(out string) string {
	if out == OutcomeError {
		return "_OTHER"
	}
	return out
}

// target is the database and table of a Manager's operations, as the
// attributes and measurement options its telemetry uses, made once.
type target struct {
	kvs       []attribute.KeyValue
	set       metric.MeasurementOption
	byOutcome map[string]metric.MeasurementOption
}

type targetKey struct {
	db    *gorm.DB
	table string
}

// targets caches each database and table's target.
var targets sync.Map // targetKey → *target

// targetOf is m's target.
func targetOf(m *lockmgr.Manager) *target {
	k := targetKey{m.DB(), m.Table()}
	if t, ok := targets.Load(k); ok {
		return t.(*target)
	}
	kvs := []attribute.KeyValue{AttrSystem.String(system(k.db)), AttrTable.String(k.table)}
	t := &target{kvs: kvs, set: metric.WithAttributeSet(attribute.NewSet(kvs...)), byOutcome: map[string]metric.MeasurementOption{}}
	for _, o := range []string{OutcomeOK, OutcomeLocked, OutcomeNotHeld, OutcomeNotFound, OutcomeCanceled, OutcomeError} {
		t.byOutcome[o] = metric.WithAttributeSet(attribute.NewSet(append(slices.Clip(kvs), AttrOutcome.String(o))...))
	}
	v, _ := targets.LoadOrStore(k, t)
	return v.(*target)
}

func system(db *gorm.DB) string {
	s := db.Dialector.Name()
	switch {
	case s == "postgres":
		s = "postgresql"
	case s == "mysql" && strings.Contains(serverVersion(db.Dialector), "MariaDB"):
		s = "mariadb"
	}
	return s
}

// serverVersion is the ServerVersion that gorm.io/driver/mysql's Dialector
// records when it connects ("" for other dialectors).
func serverVersion(d gorm.Dialector) string {
	v := reflect.ValueOf(d)
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return ""
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return ""
	}
	f, ok := v.Type().FieldByName("ServerVersion")
	if !ok || f.Type.Kind() != reflect.String {
		return ""
	}
	fv, err := v.FieldByIndexErr(f.Index)
	if err != nil {
		return ""
	}
	return fv.String()
}
