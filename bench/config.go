package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Workload names, as given to -workloads.
const (
	wlCycle   = "cycle"
	wlSetLock = "setlock"
	wlHandoff = "handoff"
	wlSoak    = "soak"
	wlTable   = "table"
)

// allWorkloads is the order in which a database's workloads run; the table
// workload fills a million rows, so it goes last.
var allWorkloads = []string{wlCycle, wlSetLock, wlHandoff, wlSoak, wlTable}

// config is everything a run depends on; it is recorded in the results.
type config struct {
	DBs            []string      `json:"dbs"`
	Quick          bool          `json:"quick"`
	Rounds         int           `json:"rounds"`
	Dur            time.Duration `json:"round_ns"`
	Concs          []int         `json:"concurrency"`
	TableRows      []int         `json:"table_rows"`
	TableConc      int           `json:"table_concurrency"`
	SetSizes       []int         `json:"setlock_names"`
	HandoffWorkers int           `json:"handoff_workers"`
	HandoffLocal   int           `json:"handoff_local_workers"`
	HandoffDur     time.Duration `json:"handoff_ns"`
	CrossProcess   bool          `json:"cross_process"`
	Hold           time.Duration `json:"hold_ns"`
	Think          time.Duration `json:"think_ns"`
	SoakDur        time.Duration `json:"soak_ns"`
	TTL            time.Duration `json:"ttl_ns"`
	DjangoPoll     time.Duration `json:"django_poll_ns"`
	Workloads      []string      `json:"workloads"`
	Lockers        []string      `json:"lockers"`
	PGDSN          string        `json:"-"`
	MySQLDSN       string        `json:"-"`
	RedisAddr      string        `json:"redis"`
	SQLiteDir      string        `json:"-"`
	Out            string        `json:"-"`
	Readme         string        `json:"-"`
	CPUProfile     string        `json:"-"`
	MemProfile     string        `json:"-"`
	NoCharts       bool          `json:"-"`
	Render         string        `json:"-"`
	Command        string        `json:"command"`
}

func (c *config) wantLocker(l string) bool   { return slices.Contains(c.Lockers, l) }
func (c *config) wantWorkload(w string) bool { return slices.Contains(c.Workloads, w) }

// quickValues are what -quick changes, unless a flag sets them itself:
// the whole run takes one to two minutes for all three databases.
var quickValues = map[string]string{
	"rounds":          "3",
	"dur":             "200ms",
	"rows":            "0,100000",
	"handoff-workers": "8",
	"handoff-local":   "16",
	"handoff-dur":     "2s",
	"soak":            "5s",
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// parseFlags reads the command line. Defaults are the full run.
func parseFlags(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: go run . [-db sqlite|postgres|mysql|all] [-quick] [flags]\n\nRun from the bench directory (or: go -C bench run . -db all). Flags:")
		fs.PrintDefaults()
	}
	c := &config{}
	db := fs.String("db", "all", "databases: sqlite, postgres, mysql, a comma list, or all")
	fs.BoolVar(&c.Quick, "quick", false, "a short run (~1-2 min for all databases); explicit flags still win")
	fs.IntVar(&c.Rounds, "rounds", 5, "interleaved rounds per measurement; results are medians of rounds")
	fs.DurationVar(&c.Dur, "dur", time.Second, "length of one timed round")
	concs := fs.String("conc", "1,8,64", "goroutine counts of the uncontended cycle")
	rows := fs.String("rows", "0,100000,1000000", "other rows in the table for the table-size workload")
	fs.IntVar(&c.TableConc, "table-conc", 1, "goroutines of the table-size cycle")
	sets := fs.String("setlock", "1,10,100", "names per SetLock call")
	fs.IntVar(&c.HandoffWorkers, "handoff-workers", 16, "worker processes contending for one name in the cross-process hand-off")
	fs.IntVar(&c.HandoffLocal, "handoff-local", 64, "goroutines contending for one name in the in-process hand-off")
	fs.DurationVar(&c.HandoffDur, "handoff-dur", 10*time.Second, "length of one hand-off run")
	fs.BoolVar(&c.CrossProcess, "cross-process", true, "also run the hand-off with one worker process per worker")
	fs.DurationVar(&c.Hold, "hold", time.Millisecond, "how long a hand-off worker holds the lock")
	fs.DurationVar(&c.Think, "think", time.Millisecond, "how long a hand-off worker pauses after releasing")
	fs.DurationVar(&c.SoakDur, "soak", time.Minute, "length of the steadiness (goroutines, heap) run")
	fs.DurationVar(&c.TTL, "ttl", 30*time.Second, "expiry of every lock taken")
	fs.DurationVar(&c.DjangoPoll, "django-poll", 5*time.Second, "django-lockmgr's wait interval (fixed at 5 s in django)")
	wls := fs.String("workloads", strings.Join(allWorkloads, ","), "workloads to run")
	lks := fs.String("lockers", strings.Join(allLockers, ","), "lockers to run")
	fs.StringVar(&c.PGDSN, "pg-dsn", envOr("LOCKMGR_TEST_POSTGRES_DSN", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"), "PostgreSQL DSN")
	fs.StringVar(&c.MySQLDSN, "mysql-dsn", envOr("LOCKMGR_TEST_MYSQL_DSN", "root@tcp(127.0.0.1:3306)/test?parseTime=true&loc=UTC"), "MariaDB/MySQL DSN")
	fs.StringVar(&c.RedisAddr, "redis", "127.0.0.1:6379", "Redis address for redislock; empty to leave it out")
	fs.StringVar(&c.SQLiteDir, "sqlite-dir", os.TempDir(), "directory for the SQLite database file")
	fs.StringVar(&c.Out, "out", "results", "directory for RESULTS.md, results.json and the charts; empty: print only")
	fs.StringVar(&c.Readme, "readme", "README.md", "README whose summary block gets this run's ratios; empty: leave it")
	fs.StringVar(&c.CPUProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file")
	fs.StringVar(&c.MemProfile, "memprofile", "", "write an allocation profile at the end to this file")
	fs.BoolVar(&c.NoCharts, "no-charts", false, "skip the PNG charts")
	fs.StringVar(&c.Render, "render", "", "measure nothing: re-render RESULTS.md, the chart and the README summary from this results.json")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.Quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for name, v := range quickValues {
			if !set[name] {
				if err := fs.Set(name, v); err != nil {
					return nil, err
				}
			}
		}
	}
	var err error
	if c.DBs, err = parseDBs(*db); err != nil {
		return nil, err
	}
	for _, p := range []struct {
		dst *[]int
		s   string
	}{{&c.Concs, *concs}, {&c.TableRows, *rows}, {&c.SetSizes, *sets}} {
		if *p.dst, err = parseInts(p.s); err != nil {
			return nil, err
		}
	}
	c.Workloads, c.Lockers = splitList(*wls), splitList(*lks)
	if c.RedisAddr == "" {
		c.Lockers = slices.DeleteFunc(c.Lockers, func(s string) bool { return s == lkRedis })
	}
	if c.Rounds < 1 || c.Dur <= 0 || c.HandoffWorkers < 1 || c.HandoffLocal < 1 || c.TableConc < 1 {
		return nil, fmt.Errorf("rounds, dur, handoff-workers, handoff-local and table-conc must be positive")
	}
	c.Command = "go run . " + strings.Join(args, " ")
	return c, nil
}

func parseDBs(s string) ([]string, error) {
	if s == "all" {
		return slices.Clone(allKinds), nil
	}
	out := splitList(s)
	for i, k := range out {
		if k == "pg" || k == "postgresql" {
			out[i] = dbPostgres
		} else if k == "mariadb" {
			out[i] = dbMySQL
		} else if !slices.Contains(allKinds, k) {
			return nil, fmt.Errorf("unknown database %q (want sqlite, postgres, mysql or all)", k)
		}
	}
	return out, nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		n, err := strconv.Atoi(strings.ReplaceAll(f, "_", ""))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("bad number %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
