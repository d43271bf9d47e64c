package lockmgr_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/mysql"
	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"

	"github.com/gormlock/lockmgr"
)

// The migration race: separate OS processes (this test binary re-executed,
// as reliability/ does) set up the same table at the same moment, each in
// one of the ways a replica may: m.AutoMigrate, db.Use(NewPlugin()), or
// GORM's db.AutoMigrate(&Lock{}) followed by a first lock call.

// envMigrateChild makes TestMain run runMigrateChild with its JSON config.
const envMigrateChild = "LOCKMGR_MIGRATE_CHILD"

// migrateChild is one replica's setup.
type migrateChild struct {
	Kind  string `json:"kind"`
	Path  string `json:"path,omitempty"` // SQLite file
	Table string `json:"table"`
	Mode  string `json:"mode"` // "automigrate", "plugin" or "firstuse"
	Name  string `json:"name"` // the lock it takes afterwards
}

// Every replica migrates with m.AutoMigrate or the plugin; where the table
// exists already, some only call New and lock (the check on first use
// completes the table). GORM's own db.AutoMigrate does not race safely
// (it checks, then creates: "table already exists"), so the parent runs it
// once, as a deploy step would.
var (
	migrateModes  = []string{"automigrate", "plugin"}
	firstUseModes = []string{"automigrate", "plugin", "firstuse"}
)

// migrateProcs is how many processes race.
const migrateProcs = 15

// migrateReps is how often they race per database and starting table: 20
// times when LOCKMGR_TORTURE is set (CI sets it), once in a plain go test;
// LOCKMGR_MIGRATE_REPS overrides both.
func migrateReps() int {
	if n, err := strconv.Atoi(os.Getenv("LOCKMGR_MIGRATE_REPS")); err == nil && n > 0 {
		return n
	}
	if os.Getenv("LOCKMGR_TORTURE") != "" {
		return 20
	}
	return 1
}

// runMigrateChild connects, says "ready", waits for a line on stdin, sets
// the table up in its mode and takes and releases one lock. Its exit code
// is 0 on success; the error goes to stderr.
func runMigrateChild(raw string) int {
	var c migrateChild
	err := json.Unmarshal([]byte(raw), &c)
	if err == nil {
		err = c.run()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func (c migrateChild) run() error {
	dialector := map[string]func() gorm.Dialector{
		"sqlite":   func() gorm.Dialector { return sqlite.Open(sqliteDSN(c.Path)) },
		"postgres": func() gorm.Dialector { return postgres.Open(os.Getenv(envPostgres)) },
		"mysql":    func() gorm.Dialector { return mysql.Open(os.Getenv(envMySQL)) },
		"tidb":     func() gorm.Dialector { return mysql.Open(os.Getenv(envTiDB)) },
	}[c.Kind]()
	db, err := gorm.Open(dialector, quiet())
	if err != nil {
		return err
	}
	if s, err := db.DB(); err != nil || s.Ping() != nil {
		return fmt.Errorf("connect: %v", err)
	}
	fmt.Println("ready")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return err
	}
	m, err := c.setUp(db)
	if err != nil {
		return fmt.Errorf("%s: %w", c.Mode, err)
	}
	ctx := context.Background()
	// Another process may still be migrating: on SQLite its transaction
	// holds the database's write lock, which a lock call waits out only
	// with Wait (lockmgr gives up a lock wait after 50 ms).
	l, err := m.GetLock(ctx, c.Name, lockmgr.Wait(10*time.Second))
	if err != nil {
		return fmt.Errorf("%s: then GetLock: %w", c.Mode, err)
	}
	if err := m.Release(ctx, l); err != nil {
		return fmt.Errorf("%s: then Release: %w", c.Mode, err)
	}
	return nil
}

func (c migrateChild) setUp(db *gorm.DB) (*lockmgr.Manager, error) {
	opt := lockmgr.WithTable(c.Table)
	switch c.Mode {
	case "plugin":
		p := lockmgr.NewPlugin(opt)
		if err := db.Use(p); err != nil {
			return nil, err
		}
		return p.Manager(), nil
	case "firstuse":
		return lockmgr.New(db, opt)
	}
	m, err := lockmgr.New(db, opt)
	if err != nil {
		return nil, err
	}
	return m, m.AutoMigrate(context.Background())
}

// raceResult is one repetition: the failed processes' errors and the time
// from "go" until the last process exited.
type raceResult struct {
	errs []string
	took time.Duration
}

// raceMigrations starts migrateProcs children on table, lets them go at
// once and waits for all of them.
func raceMigrations(t *testing.T, kind, path, table string, modes []string) raceResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	var stdins []io.WriteCloser
	var cmds []*exec.Cmd
	var stderrs []*strings.Builder
	var stdouts []io.Reader
	for i := range migrateProcs {
		c := migrateChild{Kind: kind, Path: path, Table: table, Mode: modes[i%len(modes)], Name: "replica-" + strconv.Itoa(i)}
		raw, err := json.Marshal(c)
		require.NoError(t, err)
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), envMigrateChild+"="+string(raw))
		stderr := &strings.Builder{}
		cmd.Stderr = stderr
		in, err := cmd.StdinPipe()
		require.NoError(t, err)
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		cmds, stdins, stderrs, stdouts = append(cmds, cmd), append(stdins, in), append(stderrs, stderr), append(stdouts, out)
	}
	for i, out := range stdouts {
		line, err := bufio.NewReader(out).ReadString('\n')
		require.NoError(t, err, "child %d did not get ready: %s", i, stderrs[i])
		require.Equal(t, "ready\n", line)
	}
	start := time.Now()
	for _, in := range stdins {
		_, _ = io.WriteString(in, "go\n")
	}
	var res raceResult
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			res.errs = append(res.errs, fmt.Sprintf("%s: %v: %s", modes[i%len(modes)], err, strings.TrimSpace(stderrs[i].String())))
		}
	}
	res.took = time.Since(start)
	return res
}

// migrateScenarios prepare the table the replicas find: none, one lockmgr
// already migrated, or django-lockmgr's.
var migrateScenarios = []migrateScenario{
	{"empty", migrateModes, func(*testing.T, *gorm.DB, string, string) {}},
	{"current", firstUseModes, func(t *testing.T, db *gorm.DB, _, table string) {
		m, err := lockmgr.New(db, lockmgr.WithTable(table))
		require.NoError(t, err)
		require.NoError(t, m.AutoMigrate(t.Context()))
	}},
	{"django", firstUseModes, func(t *testing.T, db *gorm.DB, kind, table string) {
		require.NoError(t, db.Exec(fmt.Sprintf(djangoDDL[kind], table)).Error)
	}},
	{"gorm", firstUseModes, func(t *testing.T, db *gorm.DB, _, table string) {
		require.NoError(t, db.Table(table).AutoMigrate(&lockmgr.Lock{}))
	}},
}

type migrateScenario struct {
	name    string
	modes   []string
	prepare func(t *testing.T, db *gorm.DB, kind, table string)
}

func TestMigrateRace(t *testing.T) {
	reps := migrateReps()
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			for _, sc := range migrateScenarios {
				t.Run(sc.name, func(t *testing.T) {
					var failed, failedReps int
					var times []time.Duration
					var first []string
					for range reps {
						res := migrateRaceOnce(t, b, sc)
						failed += len(res.errs)
						if len(res.errs) > 0 {
							failedReps++
							first = append(first, res.errs[0])
						}
						times = append(times, res.took)
					}
					slices.Sort(times)
					t.Logf("%s/%s: %d reps × %d processes: %d failed processes in %d reps; time min %v median %v max %v",
						b.name, sc.name, reps, migrateProcs, failed, failedReps,
						times[0].Round(time.Millisecond), times[len(times)/2].Round(time.Millisecond), times[len(times)-1].Round(time.Millisecond))
					assert.Zero(t, failed, "failures, first of each failed rep: %q", first)
				})
			}
		})
	}
}

// migrateRaceOnce prepares a fresh table, races the children on it and
// checks the result is the schema one migration leaves.
func migrateRaceOnce(t *testing.T, b backend, sc migrateScenario) raceResult {
	db := b.open(t)
	table := uniqueTable()
	path := ""
	if b.name == "sqlite" {
		path = sqlitePath(t, db)
	}
	t.Cleanup(func() { dropAll(t, db, b.name, table) })
	sc.prepare(t, db, b.dialect(), table)
	res := raceMigrations(t, b.name, path, table, sc.modes)
	if len(res.errs) == 0 {
		e := &env{t: t, kind: b.dialect(), db: db, table: table, ctx: t.Context()}
		e.m = e.manager()
		checkLockTable(e)
	}
	return res
}

// sqlitePath is the file of a SQLite database.
func sqlitePath(t *testing.T, db *gorm.DB) string {
	var seq int
	var name, file string
	require.NoError(t, db.Raw("PRAGMA database_list").Row().Scan(&seq, &name, &file))
	return file
}
