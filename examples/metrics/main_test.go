package main

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gormlock/lockmgr/examples/internal/demotest"
)

func TestMetricsEndpoint(t *testing.T) {
	checkMetrics(t, "-dsn", demotest.SQLite(t))
}

func TestMetricsOnServers(t *testing.T) {
	for _, s := range demotest.Servers() {
		t.Run(s.Kind, func(t *testing.T) {
			table := demotest.UniqueName("lockmgr_metrics_")
			demotest.DropTables(t, s.DSN, table)
			checkMetrics(t, "-dsn", s.DSN, "-table", table)
		})
	}
}

var urlRE = regexp.MustCompile(`url=(http://\S+/metrics)`)

func checkMetrics(t *testing.T, args ...string) {
	var out demotest.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(context.Background(), &out, append(args, "-addr", "127.0.0.1:0", "-duration", "3s"))
	}()
	out.WaitFor(t, `msg="serving metrics"`, 10*time.Second)
	url := urlRE.FindStringSubmatch(out.String())
	require.NotNil(t, url, out.String())
	out.WaitFor(t, `msg="report stopped: it lost its lock"`, 10*time.Second)

	resp, err := http.Get(url[1])
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, resp.Body.Close())
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	page := string(body)
	assert.Positive(t, sample(t, page, `lockmgr_acquired_total{lock="shard"}`))
	assert.Positive(t, sample(t, page, `lockmgr_contended_total{lock="shard"}`), "four workers on three shards contend")
	assert.Positive(t, sample(t, page, `lockmgr_hold_seconds_count{lock="shard"}`))
	assert.Positive(t, sample(t, page, `lockmgr_acquire_seconds_count{lock="shard"}`))
	assert.Positive(t, sample(t, page, `lockmgr_renewed_total{lock="report"}`), "the report's scope renews its lock")
	assert.EqualValues(t, 1, sample(t, page, `lockmgr_lost_total{lock="report"}`), "the cleared report lock was lost once")

	require.NoError(t, <-done)
	s := out.String()
	assert.Contains(t, s, `level=WARN msg="lockmgr: lock lost" name=report:daily`, "the Manager's slog logger")
	assert.Contains(t, s, "Totals:")
	assert.Regexp(t, `lockmgr_lost_total\s+1\s+\(report=1\)`, s)
	if t.Failed() {
		t.Logf("output:\n%s\nmetrics:\n%s", s, page)
	}
}

// sample returns the value of the series named exactly by series, or
// fails the test.
func sample(t *testing.T, page, series string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(page)
	require.NotNil(t, m, "no %s in /metrics", series)
	v, err := strconv.ParseFloat(m[1], 64)
	require.NoError(t, err)
	return v
}
