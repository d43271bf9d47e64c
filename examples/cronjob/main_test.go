package main

import (
	"context"
	"os"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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

var tickLine = regexp.MustCompile(`(?m)^(replica-\d)\s+tick (\S+)\s+(RUNS the job|skipped: (replica-\d) runs it)`)

func TestThreeReplicasRunEachTickOnce(t *testing.T) {
	checkReplicas(t, "-dsn", demotest.SQLite(t))
}

func TestReplicasOnServers(t *testing.T) {
	for _, s := range demotest.Servers() {
		t.Run(s.Kind, func(t *testing.T) {
			table := demotest.UniqueName("lockmgr_cron_")
			demotest.DropTables(t, s.DSN, table)
			checkReplicas(t, "-dsn", s.DSN, "-table", table)
		})
	}
}

func checkReplicas(t *testing.T, args ...string) {
	var out demotest.Buffer
	args = append(args, "-replicas", "3", "-every", "500ms", "-ticks", "4", "-job-time", "50ms")
	require.NoError(t, run(context.Background(), &out, args))
	s := out.String()
	defer func() {
		if t.Failed() {
			t.Logf("output:\n%s", s)
		}
	}()
	ran := map[string]string{}   // tick → replica that ran it
	seen := map[string]int{}     // tick → replicas that took part
	skipped := map[string]bool{} // replica → skipped at least once
	for _, m := range tickLine.FindAllStringSubmatch(s, -1) {
		replica, tick := m[1], m[2]
		seen[tick]++
		if m[4] == "" {
			assert.Empty(t, ran[tick], "tick %s ran twice", tick)
			ran[tick] = replica
		} else {
			skipped[replica] = true
		}
	}
	require.NotEmpty(t, seen, "no tick lines")
	for tick, n := range seen {
		assert.NotEmpty(t, ran[tick], "tick %s (%d replicas) ran nowhere", tick, n)
	}
	for tick, replica := range ran {
		assert.Regexp(t, `cronjob:report@\S+`+`\s+locked_by=`+replica, s, "the summary names %s for tick %s", replica, tick)
	}
	assert.NotEmpty(t, skipped, "some replica skipped a tick")
	assert.Contains(t, s, "Runs per replica: ")
}
