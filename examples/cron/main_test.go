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

var runLine = regexp.MustCompile(`(?m)^(replica-\d)\s+tick (\S+)\s+RUNS the job`)

var skipLine = regexp.MustCompile(`(?m)^(replica-\d)\s+tick (\S+)\s+skipped: another replica ran it`)

// TestThreeReplicasRunEachTickOnce: three replicas, one of them 300 ms
// late, run each tick once between them.
func TestThreeReplicasRunEachTickOnce(t *testing.T) {
	checkReplicas(t, "-dsn", demotest.SQLite(t))
}

func TestReplicasOnServers(t *testing.T) {
	for _, s := range demotest.Servers() {
		t.Run(s.Kind, func(t *testing.T) {
			table := demotest.UniqueName("lockmgr_gocron_")
			demotest.DropTables(t, s.DSN, table)
			checkReplicas(t, "-dsn", s.DSN, "-table", table)
		})
	}
}

func checkReplicas(t *testing.T, args ...string) {
	var out demotest.Buffer
	require.NoError(t, run(context.Background(), &out, append(args, "-replicas", "3", "-for", "4s")))
	s := out.String()
	ran := map[string]string{} // tick → the replica that ran it
	for _, m := range runLine.FindAllStringSubmatch(s, -1) {
		assert.Empty(t, ran[m[2]], "tick %s ran twice", m[2])
		ran[m[2]] = m[1]
	}
	assert.GreaterOrEqual(t, len(ran), 2, "ticks ran:\n%s", s)
	assert.NotEmpty(t, skipLine.FindAllString(s, -1), "the other replicas said they skipped:\n%s", s)
	assert.NotContains(t, s, "error:")
}
