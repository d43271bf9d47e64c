package main

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gormlock/lockmgr"
	"github.com/gormlock/lockmgr/examples/internal/demo"
	"github.com/gormlock/lockmgr/examples/internal/demotest"
)

// TestMain lets supervise start this test binary as a replica.
func TestMain(m *testing.M) {
	if os.Getenv(demo.ChildEnv) != "" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

var termLine = regexp.MustCompile(`(?m)^\S+\s+(replica-\d)\s+LEADER, term fence (\d+)$`)

func TestLeaderFailover(t *testing.T) {
	checkFailover(t, "-dsn", demotest.SQLite(t))
}

func TestLeaderFailoverOnServers(t *testing.T) {
	for _, s := range demotest.Servers() {
		t.Run(s.Kind, func(t *testing.T) {
			table := demotest.UniqueName("lockmgr_leader_")
			demotest.DropTables(t, s.DSN, table, table+"_ledger")
			checkFailover(t, "-dsn", s.DSN, "-table", table, "-ledger", table+"_ledger")
		})
	}
}

func checkFailover(t *testing.T, args ...string) {
	var out demotest.Buffer
	err := run(context.Background(), &out, append(args, "-replicas", "2",
		"-ttl", "1s", "-beat", "200ms", "-kill-after", "1s", "-run-for", "8s"))
	s := out.String()
	require.NoError(t, err, s)
	defer func() {
		if t.Failed() {
			t.Logf("output:\n%s", s)
		}
	}()
	terms := termLine.FindAllStringSubmatch(s, -1)
	require.GreaterOrEqual(t, len(terms), 2, "a second term after the kill")
	first, next, last := terms[0], terms[1], terms[len(terms)-1]
	assert.NotEqual(t, first[1], next[1], "another replica takes over")
	f1, _ := strconv.ParseInt(first[2], 10, 64)
	f2, _ := strconv.ParseInt(next[2], 10, 64)
	assert.Greater(t, f2, f1, "the new term's fence is larger")
	assert.Regexp(t, `replica-\d\s+follower; `+first[1]+` leads \(fence `+first[2]+`\)`, s, "the other replica observes the leader")
	assert.Regexp(t, `supervisor: killing `+first[1]+` \(pid \d+\) with SIGKILL`, s)
	assert.Regexp(t, `supervisor: `+next[1]+` took over \S+ after the crash`, s)
	assert.Regexp(t, last[1]+`\s+leader \(fence `+last[2]+`\): unit of work \d+ done`, s)
	assert.Contains(t, s, last[1]+"  shutting down; released the lock")
	assert.Regexp(t, `supervisor: the ledger's last write: fence `+last[2]+` by `+last[1], s)
}

func TestLedgerRefusesAnOlderFence(t *testing.T) {
	ctx := context.Background()
	db, err := demo.Open(demotest.SQLite(t))
	require.NoError(t, err)
	defer db.Close()
	m, err := lockmgr.New(db.DB)
	require.NoError(t, err)
	require.NoError(t, prepare(ctx, db.DB, m, "ledger"))
	var out bytes.Buffer
	n := &node{m: m, db: db.DB, p: demo.NewPrinter(&out, false), c: &config{ledger: "ledger", name: "a"}}
	_, err = n.work(ctx, 200)
	require.NoError(t, err)
	_, err = n.work(ctx, 100)
	require.ErrorIs(t, err, errStale, "a write under an older fence is refused")
	beats, err := n.work(ctx, 200)
	require.NoError(t, err, "the current term keeps writing")
	assert.EqualValues(t, 2, beats)
}
