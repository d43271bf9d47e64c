package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/gormlock/lockmgr"
)

// semaphoreJSON is one semaphore in list's --json output.
type semaphoreJSON struct {
	Name  string   `json:"name"`
	Size  int      `json:"size"`
	Held  int      `json:"held"`
	Slots []string `json:"slots"` // the live slots' lock names
}

// semaphores groups the live rows of locks into semaphores: each marker
// row ("NAME#size") with the live slots ("NAME#0", …) below its size.
func semaphores(locks []lockmgr.Lock) []semaphoreJSON {
	var out []semaphoreJSON
	index := map[string]int{}
	for i := range locks {
		if n, ok := lockmgr.SemaphoreSize(&locks[i]); ok {
			name, _, _ := lockmgr.SemaphoreOf(locks[i].Name)
			index[name] = len(out)
			out = append(out, semaphoreJSON{Name: name, Size: n, Slots: []string{}})
		}
	}
	for i := range locks {
		name, slot, ok := lockmgr.SemaphoreOf(locks[i].Name)
		j, known := index[name]
		if ok && known && slot >= 0 && slot < out[j].Size {
			out[j].Slots = append(out[j].Slots, locks[i].Name)
			out[j].Held++
		}
	}
	return out
}

// writeSemaphores prints a summary line per semaphore, after list's rule.
func writeSemaphores(w io.Writer, sems []semaphoreJSON) {
	if len(sems) == 0 {
		return
	}
	fmt.Fprintf(w, "Semaphores (%d):\n", len(sems))
	for _, s := range sems {
		held := "none held"
		if s.Held > 0 {
			held = "held: " + strings.Join(s.Slots, ", ")
		}
		fmt.Fprintf(w, "  %s: %d of %d slots, %s\n", s.Name, s.Held, s.Size, held)
	}
}
