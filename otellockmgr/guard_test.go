package otellockmgr_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/gormlock/lockmgr"
	"github.com/gormlock/lockmgr/otellockmgr"
)

// TestGuardSpans: a guarded transaction's guard has its span, a child of
// the caller's, with the lock's outcome: ok while held, not_held after
// its release (and the transaction rolls back).
func TestGuardSpans(t *testing.T) {
	eachDB(t, func(t *testing.T, nm newManager, systems []string) {
		tel := newTelemetry(t)
		m := nm(tel.option())
		ctx, parent := tel.tp.Tracer("test").Start(context.Background(), "charge")
		l, err := m.GetLock(ctx, "a")
		require.NoError(t, err)
		guard := func() error {
			return m.DB().WithContext(ctx).Transaction(func(tx *gorm.DB) error { return m.Guard(ctx, tx, l) })
		}
		require.NoError(t, guard())
		require.NoError(t, m.Release(ctx, l))
		require.ErrorIs(t, guard(), lockmgr.ErrNotHeld)
		parent.End()

		var outcomes []string
		for _, s := range tel.spans.GetSpans() {
			if a := attrs(s); a[otellockmgr.AttrOperation].AsString() == "guard" {
				checkSpan(t, s, parent.SpanContext(), m.Table(), systems, "guard", a[otellockmgr.AttrOutcome].AsString(), l.Fence)
				outcomes = append(outcomes, a[otellockmgr.AttrOutcome].AsString())
			}
		}
		assert.Equal(t, []string{"ok", "not_held"}, outcomes)
	})
}

// TestTermSpan: an election's term has its span, a child of Run's
// context, from the win until the release, with the term's fence.
func TestTermSpan(t *testing.T) {
	eachDB(t, func(t *testing.T, nm newManager, systems []string) {
		tel := newTelemetry(t)
		m := nm(tel.option())
		e, err := lockmgr.NewElection(m, "a")
		require.NoError(t, err)
		ctx, parent := tel.tp.Tracer("test").Start(context.Background(), "member")
		ctx, cancel := context.WithCancel(ctx)
		var fence int64
		err = e.Run(ctx, func(lctx context.Context, term lockmgr.Term) error {
			fence = term.Fence
			cancel()
			<-lctx.Done()
			return nil
		})
		require.ErrorIs(t, err, context.Canceled)
		parent.End()

		var terms int
		for _, s := range tel.spans.GetSpans() {
			if a := attrs(s); a[otellockmgr.AttrOperation].AsString() == "term" {
				checkSpan(t, s, parent.SpanContext(), m.Table(), systems, "term", "ok", fence)
				terms++
			}
		}
		assert.Equal(t, 1, terms)
	})
}
