package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"time"
)

// results is everything one run measured; results.json holds it whole.
type results struct {
	Started    time.Time         `json:"started"`
	Finished   time.Time         `json:"finished"`
	Config     *config           `json:"config"`
	Machine    machineInfo       `json:"machine"`
	Modules    map[string]string `json:"modules"`
	LockmgrRev string            `json:"lockmgr_revision"`
	DBs        []*dbResult       `json:"databases"`
	Redis      *redisResult      `json:"redis,omitempty"`
}

// dbResult is one database's measurements.
type dbResult struct {
	Kind         string          `json:"kind"`
	Title        string          `json:"title"`
	Version      string          `json:"version"`
	RedisVersion string          `json:"redis_version,omitempty"`
	Waker        string          `json:"lockmgr_cross_process_waker,omitempty"`
	Skipped      string          `json:"skipped,omitempty"`
	Cycle        []*cell         `json:"cycle,omitempty"`
	SetLock      []*cell         `json:"setlock,omitempty"`
	Table        []*cell         `json:"table_size,omitempty"`
	Handoff      []handoffResult `json:"handoff,omitempty"`
	Soak         *soakResult     `json:"soak,omitempty"`
	Notes        []string        `json:"notes,omitempty"`
	Errors       []string        `json:"errors,omitempty"`
}

// redisResult is redislock's hand-off, measured once per run.
type redisResult struct {
	Version string          `json:"version"`
	Skipped string          `json:"skipped,omitempty"`
	Handoff []handoffResult `json:"handoff,omitempty"`
	Errors  []string        `json:"errors,omitempty"`
}

type machineInfo struct {
	CPU    string `json:"cpu"`
	Cores  int    `json:"cores"`
	OS     string `json:"os"`
	Kernel string `json:"kernel"`
	Go     string `json:"go"`
	Load   string `json:"load_at_start"`
}

func newResults(cfg *config) *results {
	return &results{
		Started:    time.Now(),
		Config:     cfg,
		Machine:    readMachine(),
		Modules:    moduleVersions(),
		LockmgrRev: lockmgrRevision(),
	}
}

// loadResults reads a results.json written by an earlier run.
func loadResults(path string) (*results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var res results
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if res.Config == nil {
		return nil, fmt.Errorf("%s: no config: not a bench results.json", path)
	}
	return &res, nil
}

// find returns the cell of locker at a setting, or nil.
func find(cells []*cell, locker string, match func(*cell) bool) *cell {
	for _, c := range cells {
		if c.Locker == locker && match(c) {
			return c
		}
	}
	return nil
}

func readMachine() machineInfo {
	m := machineInfo{Cores: runtime.NumCPU(), Go: runtime.Version(), CPU: "unknown", OS: runtime.GOOS}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
				m.OS = strings.Trim(v, `"`)
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m.Load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	return m
}

// moduleVersions lists the versions of the modules the results depend on.
func moduleVersions() map[string]string {
	out := map[string]string{}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return out
	}
	want := []string{"gorm.io/gorm", "gorm.io/driver/postgres", "gorm.io/driver/mysql", "gorm.io/driver/sqlite",
		"github.com/jackc/pgx/v5", "github.com/go-sql-driver/mysql", "github.com/mattn/go-sqlite3",
		"github.com/bsm/redislock", "github.com/redis/go-redis/v9", "gonum.org/v1/plot"}
	for _, d := range bi.Deps {
		for _, w := range want {
			if d.Path == w {
				v := d.Version
				if d.Replace != nil {
					v = d.Replace.Version
				}
				out[w] = v
			}
		}
	}
	return out
}

// lockmgrRevision is the commit of the lockmgr checkout being measured
// (the replace target, ..), marked when the tree has uncommitted changes.
func lockmgrRevision() string {
	root := ".."
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return "unknown"
	}
	rev, err := exec.Command("git", "-C", root, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "no commit yet (working tree)"
	}
	r := strings.TrimSpace(string(rev))
	if st, err := exec.Command("git", "-C", root, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		r += " + uncommitted changes"
	}
	return r
}

// Markers around the README's summary, which writeReadme replaces.
const (
	readmeBegin = "<!-- summary:begin (written by the bench run) -->"
	readmeEnd   = "<!-- summary:end -->"
)

// writeReadme puts the run's summary between the README's markers, so the
// ratios the README quotes are always those of the results next to it.
func writeReadme(path string, res *results) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(b)
	i, j := strings.Index(s, readmeBegin), strings.Index(s, readmeEnd)
	if i < 0 || j < i {
		return fmt.Errorf("%s has no summary markers", path)
	}
	kind := "a full run"
	if res.Config.Quick {
		kind = "a quick run (-quick)"
	}
	summary := fmt.Sprintf("From %s on %s (%s, %d cores, shared), %s; details in [results/RESULTS.md](results/RESULTS.md).\n\n%s",
		kind, res.Started.UTC().Format("2006-01-02"), res.Machine.CPU, res.Machine.Cores,
		strings.Join(dbVersions(res), ", "), renderSummary(res))
	s = s[:i] + readmeBegin + "\n" + summary + "\n![uncontended cycle throughput](results/cycle.png)\n" + s[j:]
	return os.WriteFile(path, []byte(s), 0o644)
}

// dbVersions names each measured database with its short version.
func dbVersions(res *results) []string {
	var out []string
	for _, d := range res.DBs {
		if d.Skipped != "" {
			continue
		}
		v := strings.Fields(d.Version)
		switch {
		case len(v) >= 2 && (v[0] == "PostgreSQL" || v[0] == "SQLite"):
			out = append(out, v[0]+" "+v[1])
		case len(v) >= 1:
			out = append(out, d.Title+" "+strings.SplitN(v[0], "-", 2)[0])
		}
	}
	return out
}

// writeResults writes RESULTS.md, results.json and the charts into dir.
func writeResults(dir string, res *results, charts bool) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), js, 0o644); err != nil {
		return err
	}
	if charts {
		if err := writeCharts(dir, res); err != nil {
			return fmt.Errorf("charts: %w", err)
		}
	}
	return os.WriteFile(filepath.Join(dir, "RESULTS.md"), []byte(renderMarkdown(res)), 0o644)
}
