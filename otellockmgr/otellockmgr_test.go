package otellockmgr_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"gorm.io/gorm"

	"github.com/gormlock/lockmgr"
	"github.com/gormlock/lockmgr/lockmgrtest"
	"github.com/gormlock/lockmgr/otellockmgr"
)

func TestSpans(t *testing.T) {
	eachDB(t, func(t *testing.T, nm newManager, systems []string) {
		tel := newTelemetry(t)
		m := nm(tel.option())
		ctx, parent := tel.tp.Tracer("test").Start(context.Background(), "job")
		l, err := m.GetLock(ctx, "a")
		require.NoError(t, err)
		_, err = m.GetLock(ctx, "a", lockmgr.Wait(30*time.Millisecond))
		require.ErrorIs(t, err, lockmgr.ErrLocked)
		l, err = m.Renew(ctx, l)
		require.NoError(t, err)
		require.NoError(t, m.Release(ctx, l))
		require.ErrorIs(t, m.Release(ctx, l), lockmgr.ErrNotHeld)
		parent.End()

		spans := tel.spans.GetSpans()
		require.Len(t, spans, 6)
		want := []struct{ op, outcome string }{
			{"acquire", "ok"}, {"acquire", "locked"}, {"renew", "ok"}, {"release", "ok"}, {"release", "not_held"},
		}
		for i, w := range want {
			checkSpan(t, spans[i], parent.SpanContext(), m.Table(), systems, w.op, w.outcome, l.Fence)
		}
		assert.Equal(t, codes.Unset, spans[1].Status.Code, "a held name is an answer, not an error")
		assert.Equal(t, codes.Error, spans[4].Status.Code, "a release of a lost lock is")
		assert.Equal(t, "job", spans[5].Name)

		got := tel.metrics(t)
		assert.Equal(t, int64(2), got[otellockmgr.MetricAcquireDuration], "one acquisition took the lock, one found it held")
		assert.Equal(t, int64(1), got[otellockmgr.MetricAcquireDuration+"/locked"])
		assert.Equal(t, int64(1), got[otellockmgr.MetricAcquireDuration+"/ok"])
		assert.GreaterOrEqual(t, got[otellockmgr.MetricContentions], int64(1))
		assert.Equal(t, int64(1), got[otellockmgr.MetricHoldDuration])
		assert.Equal(t, int64(0), got[otellockmgr.MetricHeld])
		assert.Equal(t, int64(0), got[otellockmgr.MetricLost])
	})
}

// TestLost: a scope's lock taken by another holder is counted lost, and
// no longer held; the keep-alive renewal that found it has its span.
func TestLost(t *testing.T) {
	eachDB(t, func(t *testing.T, nm newManager, _ []string) {
		tel := newTelemetry(t)
		m := nm(tel.option())
		err := m.Do(context.Background(), "job", func(ctx context.Context, _ *lockmgr.Scope) error {
			lockmgrtest.Steal(t, m, "job")
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Second):
			}
			return nil
		}, lockmgr.KeepAliveEvery(10*time.Millisecond))
		require.ErrorIs(t, err, lockmgr.ErrLockLost)
		got := tel.metrics(t)
		assert.Equal(t, int64(1), got[otellockmgr.MetricLost])
		assert.Equal(t, int64(0), got[otellockmgr.MetricHeld])
		var lost int
		for _, s := range tel.spans.GetSpans() {
			if a := attrs(s); a[otellockmgr.AttrOperation].AsString() == "keep_alive" && a[otellockmgr.AttrOutcome].AsString() == "not_held" {
				lost++
			}
		}
		assert.Equal(t, 1, lost, "one keep-alive span found the loss")
	})
}

// TestUserHooks: hooks given with WithHooks still run, after the
// telemetry's, and the user's OnStart gets the span's context.
func TestUserHooks(t *testing.T) {
	tel := newTelemetry(t)
	var acquired, contended int
	var sawSpan bool
	m := lockmgrtest.New(t, otellockmgr.Option(otellockmgr.WithTracerProvider(tel.tp), otellockmgr.WithMeterProvider(tel.mp),
		otellockmgr.WithHooks(lockmgr.Hooks{
			OnAcquire:   func(*lockmgr.Lock, time.Duration) { acquired++ },
			OnContended: func(*lockmgr.Lock, time.Duration) { contended++ },
			OnStart: func(ctx context.Context, _ *lockmgr.Manager, _, _ string) (context.Context, func(*lockmgr.Lock, error)) {
				sawSpan = trace.SpanContextFromContext(ctx).IsValid()
				return ctx, nil
			},
		})))
	ctx := context.Background()
	_, err := m.GetLock(ctx, "a")
	require.NoError(t, err)
	_, err = m.GetLock(ctx, "a")
	require.ErrorIs(t, err, lockmgr.ErrLocked)
	assert.Equal(t, 1, acquired)
	assert.Equal(t, 1, contended)
	assert.True(t, sawSpan)
	assert.Len(t, tel.spans.GetSpans(), 2)
}

// checkSpan checks the span of the operation op that ended with outcome:
// a child of parent, with the database's and the lock's attributes.
func checkSpan(t *testing.T, s tracetest.SpanStub, parent trace.SpanContext, table string, systems []string, op, outcome string, fence int64) {
	a := attrs(s)
	assert.Equal(t, op+" "+table, s.Name)
	assert.Equal(t, trace.SpanKindClient, s.SpanKind)
	assert.Equal(t, parent.SpanID(), s.Parent.SpanID(), "%s is a child of the caller's span", s.Name)
	assert.Equal(t, parent.TraceID(), s.SpanContext.TraceID())
	assert.Contains(t, systems, a[otellockmgr.AttrSystem].AsString())
	assert.Equal(t, table, a[otellockmgr.AttrTable].AsString())
	assert.Equal(t, op, a[otellockmgr.AttrOperation].AsString())
	assert.Equal(t, "a", a[otellockmgr.AttrLockName].AsString())
	assert.Equal(t, outcome, a[otellockmgr.AttrOutcome].AsString(), s.Name)
	if outcome == "ok" {
		assert.Equal(t, fence, a[otellockmgr.AttrFence].AsInt64())
		assert.NotContains(t, a, otellockmgr.AttrErrorType)
		assert.Equal(t, codes.Unset, s.Status.Code)
		return
	}
	assert.Equal(t, outcome, a[otellockmgr.AttrErrorType].AsString())
	assert.NotContains(t, a, otellockmgr.AttrFence)
}

// TestStatementsInSpan: with WithGORMCallbacks, the statements of a lock
// operation reach GORM's callbacks (where gorm.io/plugin/opentelemetry
// starts its spans) on the operation span's context.
func TestStatementsInSpan(t *testing.T) {
	tel := newTelemetry(t)
	m := lockmgrtest.New(t)
	var mu sync.Mutex
	seen := map[trace.SpanID]int{}
	record := func(db *gorm.DB) {
		mu.Lock()
		defer mu.Unlock()
		seen[trace.SpanContextFromContext(db.Statement.Context).SpanID()]++
	}
	require.NoError(t, m.DB().Callback().Raw().Before("gorm:raw").Register("test:raw", record))
	require.NoError(t, m.DB().Callback().Row().Before("gorm:row").Register("test:row", record))
	m, err := lockmgr.New(m.DB(), lockmgr.WithGORMCallbacks(), tel.option())
	require.NoError(t, err)
	ctx := context.Background()
	l, err := m.GetLock(ctx, "a")
	require.NoError(t, err)
	require.NoError(t, m.Release(ctx, l))
	spans := tel.spans.GetSpans()
	require.Len(t, spans, 2)
	for _, s := range spans {
		assert.Positive(t, seen[s.SpanContext.SpanID()], "no statement of %s ran on its span's context", s.Name)
	}
}
