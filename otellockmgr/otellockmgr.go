package otellockmgr

import (
	"context"
	"slices"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/gormlock/lockmgr"
)

// ScopeName is the instrumentation scope of the tracer and the meter.
const ScopeName = "github.com/gormlock/lockmgr/otellockmgr"

// Option returns a lockmgr.Option that records a span per lock operation
// and the metrics listed in the package doc. Give each Manager its own
// (New copies it to WithTx Managers): the lost-lock and contention metrics
// carry the table of the Manager that last used it. An instrument the
// meter cannot create is reported to otel.Handle and left out.
func Option(opts ...Opt) lockmgr.Option {
	var c config
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	if c.tp == nil {
		c.tp = otel.GetTracerProvider()
	}
	if c.mp == nil {
		c.mp = otel.GetMeterProvider()
	}
	t := newTelemetry(c)
	return lockmgr.WithHooks(t.hooks(c.hooks))
}

// telemetry is one Option's tracer, instruments and the attributes the
// hooks without a Manager use.
type telemetry struct {
	tracer trace.Tracer
	inst   instruments
	// last is the database and table of the last operation begun: the
	// hooks that get no Manager (OnContended, OnLost) use it.
	last atomic.Pointer[target]
}

func newTelemetry(c config) *telemetry {
	t := &telemetry{
		tracer: c.tp.Tracer(ScopeName, trace.WithInstrumentationVersion(version)),
		inst:   newInstruments(c.mp.Meter(ScopeName, metric.WithInstrumentationVersion(version))),
	}
	t.last.Store(&target{set: metric.WithAttributeSet(attribute.NewSet())})
	return t
}

// hooks are the telemetry's, each followed by the user's.
func (t *telemetry) hooks(user lockmgr.Hooks) lockmgr.Hooks {
	return lockmgr.Hooks{
		OnStart:     t.start(user.OnStart),
		OnAcquire:   user.OnAcquire,
		OnRelease:   user.OnRelease,
		OnRenew:     user.OnRenew,
		OnContended: t.event(t.contended, user.OnContended),
		OnLost:      t.event(t.lost, user.OnLost),
	}
}

// event is a hook calling ours, then the user's if any.
func (t *telemetry) event(ours, theirs func(*lockmgr.Lock, time.Duration)) func(*lockmgr.Lock, time.Duration) {
	return func(l *lockmgr.Lock, d time.Duration) {
		ours(l, d)
		if theirs != nil {
			theirs(l, d)
		}
	}
}

func (t *telemetry) contended(*lockmgr.Lock, time.Duration) {
	t.inst.contended.Add(context.Background(), 1, t.last.Load().set)
}

func (t *telemetry) lost(*lockmgr.Lock, time.Duration) {
	set := t.last.Load().set
	t.inst.lost.Add(context.Background(), 1, set)
	t.inst.held.Add(context.Background(), -1, set)
}

// start is Hooks.OnStart: a span, a child of ctx's, for the operation,
// ended with its outcome; then the user's OnStart, on the span's context.
func (t *telemetry) start(user func(context.Context, *lockmgr.Manager, string, string) (context.Context, func(*lockmgr.Lock, error))) func(context.Context, *lockmgr.Manager, string, string) (context.Context, func(*lockmgr.Lock, error)) {
	return func(ctx context.Context, m *lockmgr.Manager, op, name string) (context.Context, func(*lockmgr.Lock, error)) {
		db := targetOf(m)
		t.last.Store(db)
		attrs := append(slices.Clip(db.kvs), AttrOperation.String(op), AttrLockName.String(name))
		ctx, span := t.tracer.Start(ctx, op+" "+m.Table(),
			trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
		began := time.Now()
		var theirs func(*lockmgr.Lock, error)
		if user != nil {
			ctx, theirs = user(ctx, m, op, name)
		}
		return ctx, func(l *lockmgr.Lock, err error) {
			t.end(ctx, span, db, op, began, l, err)
			if theirs != nil {
				theirs(l, err)
			}
		}
	}
}

// end records an operation's outcome on its span and in the metrics.
func (t *telemetry) end(ctx context.Context, span trace.Span, db *target, op string, began time.Time, l *lockmgr.Lock, err error) {
	took := time.Since(began)
	out := outcome(err)
	if span.IsRecording() {
		annotate(span, out, l, err)
	}
	set := db.set
	switch {
	case op == "acquire":
		t.inst.acquire.Record(ctx, took.Seconds(), db.byOutcome[out])
		if err == nil {
			t.inst.held.Add(ctx, 1, set)
		}
	case op == "release" && err == nil:
		t.inst.held.Add(ctx, -1, set)
		if !l.CreatedAt.IsZero() {
			t.inst.hold.Record(ctx, max(0, time.Since(l.CreatedAt).Seconds()), set)
		}
	}
	span.End()
}

// annotate sets a recording span's outcome, and its lock or its error.
func annotate(span trace.Span, out string, l *lockmgr.Lock, err error) {
	span.SetAttributes(AttrOutcome.String(out))
	if l != nil && err == nil {
		span.SetAttributes(AttrFence.Int64(l.Fence), AttrOwner.String(l.LockedBy))
	}
	if err != nil {
		span.SetAttributes(AttrErrorType.String(errorType(out)))
		if out != OutcomeLocked { // a held name is an answer, not a failure
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
	}
}
