package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"gorm.io/gorm"
)

const serveLong = `serve answers HTTP, read-only, until SIGINT or SIGTERM:

  /          a web page of the live locks: holder, pid, fence, when taken,
             how long held, and a countdown to each expiry; it reloads
             itself every 5 seconds
  /metrics   Prometheus metrics of the table, read at each scrape
  /locks.json  what 'lockmgr list --json' prints

It listens on 127.0.0.1:9465 unless --addr says otherwise: the page names
every holder, so expose it on purpose (--addr :9465), not by default.
It prints "serving on http://ADDR/" on stdout once it listens.

METRICS
  lockmgr_locks_held{prefix}                live locks
  lockmgr_locks_oldest_age_seconds{prefix}  how long the oldest live lock
                                            has been held (0 when none)
  lockmgr_locks_expired_rows{prefix}        rows past their expiry that no
                                            one has cleaned ('lockmgr clean')
  lockmgr_table_up                          1 when the scrape read the table,
                                            0 when it could not (the others
                                            are then absent)
  Times are judged by the database's clock, as GetLock judges them.

  The prefix label is the part of a name before its first ':' ("invoice"
  for "invoice:42"), or the whole name when it has none. At most
  --max-prefixes distinct prefixes (default 20) get series of their own:
  those with the most rows at that scrape, ties by name; the others add
  up under prefix="other". So a scrape has at most 3 x (N+1) + 1 series,
  whatever the names.`

// defaultServeAddr is serve's address unless --addr says otherwise.
const defaultServeAddr = "127.0.0.1:9465"

// serveCommand builds "lockmgr serve".
func (a *app) serveCommand() *cobra.Command {
	addr, maxPrefixes := defaultServeAddr, 20
	cmd := &cobra.Command{
		Use:   "serve [--addr HOST:PORT] [--max-prefixes N]",
		Short: "Serve Prometheus metrics and a read-only web page of the locks",
		Long:  serveLong,
		Example: `  lockmgr serve
  lockmgr serve --addr 127.0.0.1:0 --max-prefixes 5
  curl -s localhost:9465/metrics | grep ^lockmgr_`,
		Args: a.noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if maxPrefixes < 1 {
				return &usageError{cmdPath: cmd.CommandPath(), err: fmt.Errorf("--max-prefixes %d: want at least 1", maxPrefixes)}
			}
			_, t, err := a.manager(cmd.Context(), false)
			if err != nil {
				return err
			}
			return a.serve(cmd.Context(), addr, newServer(a.gdb, t.Table, maxPrefixes))
		},
	}
	cmd.Flags().StringVar(&addr, "addr", addr, "listen on `HOST:PORT` (port 0: any free one)")
	cmd.Flags().IntVar(&maxPrefixes, "max-prefixes", maxPrefixes, "at most `N` prefix labels, the rest \"other\"")
	return cmd
}

// serve listens on addr and serves s until a signal comes.
func (a *app) serve(ctx context.Context, addr string, s *server) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("cannot listen: %w", err)
	}
	hs := &http.Server{Handler: s.handler(), ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(a.stdout, "serving on http://%s/\n", ln.Addr())
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = hs.Shutdown(sctx)
	if serr := <-done; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// server answers serve's requests from the table.
type server struct {
	db          *gorm.DB
	table       string
	maxPrefixes int
	registry    *prometheus.Registry
}

// newServer builds a server; its metrics read the table at each scrape.
func newServer(db *gorm.DB, table string, maxPrefixes int) *server {
	s := &server{db: db, table: table, maxPrefixes: maxPrefixes, registry: prometheus.NewRegistry()}
	s.registry.MustRegister(&tableCollector{s: s})
	return s
}

// handler routes /, /metrics and /locks.json, for GET and HEAD only.
func (s *server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /locks.json", s.locksJSON)
	mux.HandleFunc("GET /{$}", s.page)
	return mux
}

// snapshot reads the table within 10 s.
func (s *server) snapshot(ctx context.Context) (*snapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return readSnapshot(ctx, s.db, s.table, "")
}

// locksJSON answers as 'lockmgr list --json' prints.
func (s *server) locksJSON(w http.ResponseWriter, r *http.Request) {
	snap, err := s.snapshot(r.Context())
	if err != nil {
		http.Error(w, oneLine(err), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = writeListJSON(w, s.table, snap.Live(""), snap.Now)
}

var (
	descHeld    = prometheus.NewDesc("lockmgr_locks_held", "Live locks, by name prefix.", []string{"prefix"}, nil)
	descOldest  = prometheus.NewDesc("lockmgr_locks_oldest_age_seconds", "How long the oldest live lock has been held, by name prefix (database clock).", []string{"prefix"}, nil)
	descExpired = prometheus.NewDesc("lockmgr_locks_expired_rows", "Rows past their expiry not yet cleaned, by name prefix.", []string{"prefix"}, nil)
	descUp      = prometheus.NewDesc("lockmgr_table_up", "1 when the scrape read the lock table, else 0.", nil, nil)
)

// tableCollector reads the table at each scrape.
type tableCollector struct{ s *server }

// Describe sends the metrics' descriptions.
func (c *tableCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descHeld, descOldest, descExpired, descUp} {
		ch <- d
	}
}

// Collect reads the table and sends the gauges.
func (c *tableCollector) Collect(ch chan<- prometheus.Metric) {
	snap, err := c.s.snapshot(context.Background())
	if err != nil {
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, 1)
	for p, st := range prefixStats(snap, c.s.maxPrefixes) {
		ch <- prometheus.MustNewConstMetric(descHeld, prometheus.GaugeValue, float64(st.held), p)
		ch <- prometheus.MustNewConstMetric(descOldest, prometheus.GaugeValue, st.oldest.Seconds(), p)
		ch <- prometheus.MustNewConstMetric(descExpired, prometheus.GaugeValue, float64(st.expired), p)
	}
}

// stats are one prefix's numbers.
type stats struct {
	rows, held, expired int
	oldest              time.Duration
}

// add counts another prefix's numbers in.
func (st *stats) add(o stats) {
	st.rows, st.held, st.expired = st.rows+o.rows, st.held+o.held, st.expired+o.expired
	st.oldest = max(st.oldest, o.oldest)
}

// otherPrefix labels the prefixes beyond the bound.
const otherPrefix = "other"

// namePrefix is a name's prefix label: the part before its first ':'.
func namePrefix(name string) string {
	p, _, _ := strings.Cut(name, ":")
	return p
}

// prefixStats sums snap's rows by prefix, keeping the max prefixes with
// the most rows (ties by name) and adding the rest up under "other".
func prefixStats(snap *snapshot, maxPrefixes int) map[string]stats {
	all := map[string]stats{}
	for i := range snap.Rows {
		l := &snap.Rows[i]
		st := stats{rows: 1}
		if snap.live(l) {
			st.held, st.oldest = 1, max(snap.Now.Sub(l.CreatedAt), 0)
		} else {
			st.expired = 1
		}
		p := namePrefix(l.Name)
		sum := all[p]
		sum.add(st)
		all[p] = sum
	}
	names := make([]string, 0, len(all))
	for p := range all {
		names = append(names, p)
	}
	sort.Slice(names, func(i, j int) bool {
		a, b := all[names[i]], all[names[j]]
		return a.rows > b.rows || a.rows == b.rows && names[i] < names[j]
	})
	out := map[string]stats{}
	for i, p := range names {
		label := p
		if i >= maxPrefixes {
			label = otherPrefix
		}
		sum := out[label]
		sum.add(all[p])
		out[label] = sum
	}
	return out
}
