package reliability

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql" // database/sql driver for readiness checks
	"github.com/stretchr/testify/require"
)

// A private database server, started by the test in a temp dir on a spare
// loopback port, so the test may stop and restart it without disturbing
// the shared servers other packages use in parallel.
type privateServer interface {
	Name() string
	DSN() string
	Driver() string
	// Stop stops the server; crash means an immediate stop or SIGKILL.
	Stop(crash bool) error
	// Start starts it again on the same port and data, and waits until it
	// accepts connections.
	Start() error
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// ---- PostgreSQL ------------------------------------------------------------

type pgServer struct {
	bin, dir string
	port     int
	cred     *syscall.Credential // run as the postgres user when we are root
}

// findPGBin returns the directory of initdb, pg_ctl and postgres.
func findPGBin() string {
	if d := os.Getenv("LOCKMGR_PG_BINDIR"); d != "" {
		return d
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	if len(matches) == 0 {
		if p, err := exec.LookPath("pg_ctl"); err == nil {
			return filepath.Dir(p)
		}
		return ""
	}
	return filepath.Dir(matches[len(matches)-1])
}

// startPrivatePostgres runs initdb and starts a server of the test's own;
// t.Cleanup stops it and removes its data.
func startPrivatePostgres(t *testing.T) privateServer {
	t.Helper()
	bin := findPGBin()
	if bin == "" {
		t.Skip("PostgreSQL server binaries (initdb, pg_ctl) not found; set LOCKMGR_PG_BINDIR")
	}
	dir, err := os.MkdirTemp("", "lockmgr-pg-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	s := &pgServer{bin: bin, dir: dir, port: freePort(t)}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Skip("running as root and no postgres user to run initdb as")
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		require.NoError(t, os.Chown(dir, uid, gid))
	}
	out, err := s.run("initdb", "-D", s.data(), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
	require.NoError(t, err, "initdb: %s", out)
	require.NoError(t, s.Start())
	t.Cleanup(func() { _ = s.Stop(false) })
	return s
}

func (s *pgServer) Name() string   { return "postgres" }
func (s *pgServer) Driver() string { return "postgres" }
func (s *pgServer) data() string   { return filepath.Join(s.dir, "data") }

func (s *pgServer) DSN() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&connect_timeout=5", s.port)
}

func (s *pgServer) run(tool string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(s.bin, tool), args...)
	cmd.Dir = s.dir
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	return cmd.CombinedOutput()
}

func (s *pgServer) Start() error {
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off", s.port, s.dir)
	out, err := s.run("pg_ctl", "-D", s.data(), "-l", filepath.Join(s.dir, "log"), "-w", "-t", "60", "-o", opts, "start")
	if err != nil {
		return fmt.Errorf("pg_ctl start: %w: %s", err, out)
	}
	return nil
}

func (s *pgServer) Stop(crash bool) error {
	mode := "fast"
	if crash {
		mode = "immediate"
	}
	out, err := s.run("pg_ctl", "-D", s.data(), "-m", mode, "-w", "-t", "60", "stop")
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %w: %s", err, out)
	}
	return nil
}

// ---- MariaDB ---------------------------------------------------------------

type mariaServer struct {
	server, dir string
	port        int
	cmd         *exec.Cmd
	exited      chan struct{}
}

// startPrivateMariaDB runs mariadb-install-db and starts a server of the
// test's own; t.Cleanup stops it and removes its data.
func startPrivateMariaDB(t *testing.T) privateServer {
	t.Helper()
	server := lookFor("mariadbd", "/usr/sbin/mariadbd", "mysqld", "/usr/sbin/mysqld")
	install := lookFor("mariadb-install-db", "mysql_install_db")
	if server == "" || install == "" {
		t.Skip("MariaDB server binaries (mariadbd, mariadb-install-db) not found")
	}
	dir, err := os.MkdirTemp("", "lockmgr-mariadb-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	s := &mariaServer{server: server, dir: dir, port: freePort(t)}
	args := []string{"--no-defaults", "--datadir=" + s.data(), "--auth-root-authentication-method=normal", "--skip-test-db"}
	if os.Geteuid() == 0 {
		args = append(args, "--user=root")
	}
	out, err := exec.Command(install, args...).CombinedOutput()
	require.NoError(t, err, "mariadb-install-db: %s", out)
	require.NoError(t, s.Start())
	t.Cleanup(func() { _ = s.Stop(false) })
	db, err := sql.Open("mysql", fmt.Sprintf("root@tcp(127.0.0.1:%d)/", s.port))
	require.NoError(t, err)
	defer db.Close()
	_, err = db.Exec("CREATE DATABASE IF NOT EXISTS test")
	require.NoError(t, err)
	return s
}

func lookFor(names ...string) string {
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	return ""
}

func (s *mariaServer) Name() string   { return "mysql" }
func (s *mariaServer) Driver() string { return "mysql" }
func (s *mariaServer) data() string   { return filepath.Join(s.dir, "data") }

func (s *mariaServer) DSN() string {
	return fmt.Sprintf("root@tcp(127.0.0.1:%d)/test?parseTime=true&loc=UTC&timeout=5s", s.port)
}

func (s *mariaServer) Start() error {
	args := []string{"--no-defaults", "--datadir=" + s.data(), fmt.Sprintf("--port=%d", s.port),
		"--bind-address=127.0.0.1", "--socket=" + filepath.Join(s.dir, "sock"),
		"--pid-file=" + filepath.Join(s.dir, "pid"), "--log-error=" + filepath.Join(s.dir, "err.log"),
		"--skip-log-bin", "--innodb-buffer-pool-size=32M", "--innodb-flush-log-at-trx-commit=2",
		"--skip-name-resolve", "--max-connections=200"}
	if os.Geteuid() == 0 {
		args = append(args, "--user=root")
	}
	s.cmd = exec.Command(s.server, args...)
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("start mariadbd: %w", err)
	}
	s.exited = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(s.cmd, s.exited)
	return s.waitReady()
}

func (s *mariaServer) waitReady() error {
	db, err := sql.Open("mysql", fmt.Sprintf("root@tcp(127.0.0.1:%d)/?timeout=1s", s.port))
	if err != nil {
		return err
	}
	defer db.Close()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err = db.PingContext(ctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-s.exited:
			log, _ := os.ReadFile(filepath.Join(s.dir, "err.log"))
			return fmt.Errorf("mariadbd exited: %s", log)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("mariadbd not ready after 60s: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *mariaServer) Stop(crash bool) error {
	if s.cmd == nil || s.cmd.Process == nil {
		return nil
	}
	sig := syscall.SIGTERM
	if crash {
		sig = syscall.SIGKILL
	}
	select {
	case <-s.exited:
		return nil
	default:
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("stop mariadbd: %w", err)
	}
	select {
	case <-s.exited:
		return nil
	case <-time.After(60 * time.Second):
		_ = s.cmd.Process.Kill()
		return fmt.Errorf("mariadbd did not stop in 60s")
	}
}
