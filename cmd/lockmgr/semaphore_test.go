package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSemaphoreListAndClear: list groups a semaphore's slots under it, and
// clear frees one slot by name or, with --semaphore, all of them and the
// marker. The rows are the ones the library writes: slots NAME#i and a
// never-expiring marker NAME#size recording the size.
func TestSemaphoreListAndClear(t *testing.T) {
	eachDB(t, func(t *testing.T, c *cli) {
		c.ok("set", "exports#size", "-k", "--locked-by", "lockmgr semaphore of 3")
		c.ok("set", "exports#0", "exports#2", "plain#1", "-t", "60")
		out := c.ok("list")
		assert.Contains(t, out, "There are currently 4 active locks")
		assert.True(t, strings.HasSuffix(out, rule+"\nSemaphores (1):\n  exports: 2 of 3 slots, held: exports#0, exports#2\n"), out)

		var doc struct {
			Semaphores []semaphoreJSON `json:"semaphores"`
		}
		require.NoError(t, json.Unmarshal([]byte(c.ok("list", "--json")), &doc))
		assert.Equal(t, []semaphoreJSON{{Name: "exports", Size: 3, Held: 2, Slots: []string{"exports#0", "exports#2"}}}, doc.Semaphores)

		c.ok("clear", "exports#2")
		assert.Contains(t, c.ok("list"), "  exports: 1 of 3 slots, held: exports#0\n")

		assert.Equal(t, "Clearing semaphore exports...\nSemaphore exports: 2 locks removed.\n", c.ok("clear", "--semaphore", "exports"))
		locks := c.listJSON()
		assert.Len(t, locks, 1)
		assert.Contains(t, locks, "plain#1", "a plain lock is no semaphore's")
		assert.NotContains(t, c.ok("list"), "Semaphores")
	})
}
