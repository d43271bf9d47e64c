package lockmgr

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestGracedCutsOnlyAfterTheCallerGivesUp(t *testing.T) {
	m := &Manager{release: 50 * time.Millisecond}

	// While the caller waits, the work is not cut, however long it runs.
	gctx, cancel := m.graced(context.Background())
	select {
	case <-gctx.Done():
		t.Fatal("cut while its caller still waits")
	case <-time.After(200 * time.Millisecond):
	}
	cancel()
	assert.ErrorIs(t, context.Cause(gctx), context.Canceled)

	// Once the caller gives up, the work has m.release more, then is cut.
	ctx, giveUp := context.WithCancel(context.Background())
	gctx, cancel = m.graced(ctx)
	defer cancel()
	giveUp()
	require.NoError(t, gctx.Err(), "cut at once when its caller gave up")
	select {
	case <-gctx.Done():
		assert.ErrorIs(t, context.Cause(gctx), context.DeadlineExceeded)
	case <-time.After(10 * time.Second):
		t.Fatal("not cut after the release timeout")
	}
}
