package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPrefixStatsBoundsCardinality(t *testing.T) {
	t.Parallel()
	s := &snapshot{Now: t0}
	for i := range 25 { // prefix p00 has 25 rows, p01 24, ... p24 1
		for j := range 25 - i {
			s.Rows = append(s.Rows, testLock(fmt.Sprintf("p%02d:%d", i, j), 1, t0.Add(-time.Duration(i)*time.Second), at(time.Minute)))
		}
	}
	s.Rows = append(s.Rows, testLock("plain", 1, t0, at(-time.Second))) // expired, no ':'
	st := prefixStats(s, 20)
	require.Len(t, st, 21, "20 prefixes and other")
	assert.Equal(t, 25, st["p00"].held)
	assert.Equal(t, 6, st["p19"].held)
	assert.NotContains(t, st, "p20")
	assert.NotContains(t, st, "plain")
	assert.Equal(t, stats{rows: 5 + 4 + 3 + 2 + 1 + 1, held: 15, expired: 1, oldest: 24 * time.Second}, st[otherPrefix])
	assert.Equal(t, 19*time.Second, st["p19"].oldest)
	assert.Equal(t, "invoice", namePrefix("invoice:42:x"))
	assert.Equal(t, "deploy", namePrefix("deploy"))
	one := prefixStats(s, 1)
	assert.Len(t, one, 2)
	assert.Equal(t, len(s.Rows)-25, one[otherPrefix].rows)
}

// startServe runs lockmgr serve on a free port and returns its base URL.
func (c *cli) startServe(args ...string) (*proc, string) {
	c.t.Helper()
	p := c.start(append([]string{"serve", "--addr", "127.0.0.1:0"}, args...)...)
	select {
	case line := <-p.lines:
		u, ok := strings.CutPrefix(line, "serving on ")
		require.True(c.t, ok, "first line %q", line)
		return p, strings.TrimSuffix(u, "/")
	case <-p.done:
		c.t.Fatalf("serve exited with %d: %s", p.code, p.stderr.String())
	case <-time.After(30 * time.Second):
		c.t.Fatal("serve did not say where it listens in 30s")
	}
	return nil, ""
}

// get fetches url and returns its status and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

// gauges scrapes url's metrics into name{prefix} -> value.
func gauges(t *testing.T, url string) map[string]float64 {
	t.Helper()
	code, body := get(t, url+"/metrics")
	require.Equal(t, http.StatusOK, code, body)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	require.NoError(t, err)
	out := map[string]float64{}
	for name, f := range fams {
		if !strings.HasPrefix(name, "lockmgr_") {
			continue
		}
		require.Equal(t, dto.MetricType_GAUGE, f.GetType(), name)
		for _, m := range f.GetMetric() {
			key := name
			for _, l := range m.GetLabel() {
				key += "{" + l.GetName() + "=" + l.GetValue() + "}"
			}
			out[key] = m.GetGauge().GetValue()
		}
	}
	return out
}

func TestServe(t *testing.T) {
	eachDB(t, func(t *testing.T, c *cli) {
		c.ok("set", "invoice:1", "invoice:2", "deploy", "-t", "600", "--locked-by", "web1", "--process-id", "4242")
		c.ok("set", "report:nightly", "-t", "1")
		require.Eventually(t, func() bool { return c.explainJSON("report:nightly").State == "expired" }, 20*time.Second, 100*time.Millisecond)
		p, base := c.startServe("--max-prefixes", "2")

		g := gauges(t, base)
		assert.Equal(t, 1.0, g["lockmgr_table_up"])
		assert.Equal(t, 2.0, g["lockmgr_locks_held{prefix=invoice}"])
		assert.Equal(t, 0.0, g["lockmgr_locks_expired_rows{prefix=invoice}"])
		// deploy and report have one row each; deploy wins the tie by name.
		assert.Equal(t, 1.0, g["lockmgr_locks_held{prefix=deploy}"])
		assert.Equal(t, 1.0, g["lockmgr_locks_expired_rows{prefix=other}"], "report's expired row, beyond --max-prefixes")
		assert.Equal(t, 0.0, g["lockmgr_locks_held{prefix=other}"])
		assert.Len(t, g, 1+3*3, "up and three gauges for invoice, deploy and other: %v", g)
		age := g["lockmgr_locks_oldest_age_seconds{prefix=invoice}"]
		assert.True(t, age >= 0 && age < 120, "oldest age %v", age)

		assertServePage(t, c, base)

		c.ok("clear", "invoice:1")
		assert.Equal(t, 1.0, gauges(t, base)["lockmgr_locks_held{prefix=invoice}"], "each scrape reads the table")
		require.NoError(t, p.cmd.Process.Signal(os.Interrupt))
		assert.Equal(t, 0, p.wait(10*time.Second), p.stderr.String())
	})
}

// assertServePage checks the page, /locks.json and that nothing else is
// served, for TestServe's locks.
func assertServePage(t *testing.T, c *cli, base string) {
	t.Helper()
	code, page := get(t, base+"/")
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, page, "<title>lockmgr: "+c.table+"</title>")
	assert.Contains(t, page, "3 live, 1 expired rows not yet cleaned")
	for _, name := range []string{"deploy", "invoice:1", "invoice:2"} {
		assert.Contains(t, page, `<tr class="lock" data-name="`+name+`">`)
	}
	assert.NotContains(t, page, `data-name="report:nightly"`, "expired locks are not live")
	assert.Contains(t, page, `<td class="holder">web1</td><td class="num pid">4242</td>`)
	assert.Regexp(t, `<td class="num left" data-until-ms="\d{13}">(9m\d+s|10m0s)</td>`, page)

	code, js := get(t, base+"/locks.json")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, js, `"count":3`)
	resp, err := http.Post(base+"/", "text/plain", strings.NewReader("x"))
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode, "read-only")
	code, _ = get(t, base+"/nothing")
	assert.Equal(t, http.StatusNotFound, code)
}

func TestServeDefaults(t *testing.T) {
	t.Parallel()
	c := newCLI(t, testDB{"sqlite", "sqlite://" + t.TempDir() + "/locks.db"})
	assert.Regexp(t, `--addr HOST:PORT +listen on HOST:PORT \(port 0: any free one\) \(default "127\.0\.0\.1:9465"\)`, c.ok("serve", "--help"))
	assert.Equal(t, "127.0.0.1:9465", defaultServeAddr)
	r := c.run("serve", "--max-prefixes", "0")
	assert.Equal(t, exitUsage, r.code, r.stderr)
	c.ok("migrate")
	p, base := c.startServe()
	assert.True(t, strings.HasPrefix(base, "http://127.0.0.1:"), base)
	code, page := get(t, base+"/")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, page, `<p id="none" class="muted">No live locks.</p>`)
	assert.Equal(t, map[string]float64{"lockmgr_table_up": 1}, gauges(t, base), "no series for an empty table")
	require.NoError(t, p.cmd.Process.Signal(os.Interrupt))
	assert.Equal(t, 0, p.wait(10*time.Second))
}
