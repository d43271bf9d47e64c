package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gormlock/lockmgr/examples/internal/demotest"
)

func TestInvoiceIsChargedOnce(t *testing.T) {
	dsn := demotest.SQLite(t)
	checkInvoice(t, "-dsn", dsn, "-workers", "4")
	checkInvoice(t, "-dsn", dsn, "-workers", "4") // a second run starts from an open invoice again
}

func TestInvoiceOnServers(t *testing.T) {
	for _, s := range demotest.Servers() {
		t.Run(s.Kind, func(t *testing.T) {
			table := demotest.UniqueName("lockmgr_inv_")
			prefix := table + "_"
			demotest.DropTables(t, s.DSN, table, prefix+"invoices", prefix+"order_lines", prefix+"charges")
			checkInvoice(t, "-dsn", s.DSN, "-table", table, "-prefix", prefix, "-workers", "4")
		})
	}
}

func checkInvoice(t *testing.T, args ...string) {
	t.Helper()
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), &out, args))
	s := out.String()
	round1, round2, ok := strings.Cut(s, "Round 2:")
	require.True(t, ok, "no round 2 in:\n%s", s)
	assert.Contains(t, round1, "worker-1: stock:chair is held by warehouse, so the transaction rolled back")
	assert.Contains(t, round1, "Afterwards: invoice 42 is open; 0 charge(s) recorded.")
	assert.Contains(t, round1, "No stock is reserved")
	assert.Equal(t, 1, strings.Count(round2, "charged 1290.00 EUR"), "exactly one worker charges")
	assert.Equal(t, 3, strings.Count(round2, "invoice 42 is already paid; nothing to do"), "the others find it paid")
	assert.Contains(t, round2, "Result: invoice 42 is paid; 1 charge(s) recorded.")
	for _, sku := range []string{"chair", "desk", "lamp"} {
		assert.Contains(t, round2, "<Lock name='stock:"+sku+"' locked_by='worker-")
	}
	if t.Failed() {
		t.Logf("output:\n%s", s)
	}
}
