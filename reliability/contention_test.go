package reliability

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/gormlock/lockmgr"
)

// TestTortureHotName hammers two names from many goroutines of one process
// with GetLock and an immediate Release: the shortest possible holds, the
// most acquire/release races per second. The only error allowed is
// ErrLocked ("never a driver error" — e.g. no MariaDB deadlock, 1213).
func TestTortureHotName(t *testing.T) {
	forEachDB(t, func(t *testing.T, tg target) {
		d := 2 * time.Second
		switch tortureMode() {
		case "short":
			d = 8 * time.Second
		case "long":
			d = time.Minute
		}
		db := mustOpen(t, tg)
		m := newManager(t, db, tableName("lock"))
		var mu sync.Mutex
		errs := map[string]int{}
		var cycles, refused int
		deadline := time.Now().Add(d)
		var wg sync.WaitGroup
		for g := 0; g < 12; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				name := fmt.Sprintf("hot-%d", g%2)
				for time.Now().Before(deadline) {
					ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
					l, err := m.GetLock(ctx, name, lockmgr.Expires(time.Minute))
					if err == nil {
						err = m.Release(ctx, l)
					}
					cancel()
					mu.Lock()
					switch {
					case err == nil:
						cycles++
					case errors.Is(err, lockmgr.ErrLocked):
						refused++
					default:
						errs[short(err.Error())]++
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		report(t, "hot-name", map[string]any{"db": tg.Name, "seconds": d.Seconds(), "cycles": cycles, "refused": refused, "errors": errs})
		assert.Empty(t, errs, "errors other than ErrLocked")
		assert.Positive(t, cycles)
	})
}
