package lockmgr_test

import (
	"bufio"
	"context"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// envNested set to 0 skips TestWorkspaceModules, for a run that names the
// nested modules itself (go test github.com/gormlock/lockmgr/...).
const envNested = "LOCKMGR_TEST_NESTED"

// TestWorkspaceModules runs the tests of the workspace's other modules —
// the CLI, the examples, lockmgrtest, otellockmgr and the reliability
// tests, kept apart so that the library's users do not inherit their
// dependencies — so that `go test ./...` at the root of a checkout runs
// every test: the ./... pattern stops at a nested go.mod. The nested run gets this run's -race, -count, -short
// and -timeout; its package lines show among this run's (see packageLines).
func TestWorkspaceModules(t *testing.T) {
	if os.Getenv(envNested) == "0" {
		t.Skipf("%s=0: the nested modules are run by name", envNested)
	}
	inCheckout(t)
	work, err := os.ReadFile("go.work")
	require.NoError(t, err)
	args := []string{"test"}
	if raceEnabled {
		args = append(args, "-race")
	}
	flag.Visit(func(f *flag.Flag) { // the flags this run was given
		switch f.Name {
		case "test.count", "test.short", "test.timeout":
			args = append(args, "-"+f.Name[len("test."):]+"="+f.Value.String())
		}
	})
	for _, dir := range workspaceDirs(string(work)) {
		if dir != "." {
			args = append(args, "./"+filepath.ToSlash(dir)+"/...")
		}
	}
	ctx := context.Background()
	if deadline, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline.Add(-5*time.Second))
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, "go", args...) // go test puts its own go first in PATH
	cmd.Env = append(os.Environ(), envNested+"=0")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	t.Logf("go %v", args)
	require.NoError(t, cmd.Start())
	lines := packageLines(t)
	r := bufio.NewReader(out)
	for {
		line, err := r.ReadString('\n')
		if packageLine.MatchString(line) {
			_, _ = io.WriteString(lines, line)
		} else {
			_, _ = io.WriteString(os.Stdout, line)
		}
		if err != nil {
			break
		}
	}
	require.NoError(t, cmd.Wait(), "the nested modules' tests failed; their output is above")
}

// packageLine is a line of go test's own: a package's result.
var packageLine = regexp.MustCompile(`^(ok  |FAIL|\?   )\t\S+`)

// packageLines is where the nested packages' result lines go. go test shows
// the output of a package that passes only with -v, so without -v they go
// to the go command's own standard output, beside its lines, when that can
// be reached safely: on Linux, through /proc, when it is a pipe, a terminal
// or a file opened for appending (writing to a file at another offset than
// the go command's would garble it). Otherwise they stay in this test's
// output: shown with -v, and when a test fails.
func packageLines(t *testing.T) io.Writer {
	if testing.Verbose() || runtime.GOOS != "linux" { // -v and -json show this test's output
		return os.Stdout
	}
	parent := "/proc/" + strconv.Itoa(os.Getppid())
	if exe, err := os.Readlink(parent + "/exe"); err != nil || filepath.Base(exe) != "go" {
		return os.Stdout // not run by go test: a test binary run by hand, or through -exec
	}
	fi, err := os.Stat(parent + "/fd/1")
	if err != nil {
		return os.Stdout
	}
	flag := os.O_WRONLY
	switch mode := fi.Mode(); {
	case mode&(os.ModeNamedPipe|os.ModeCharDevice) != 0:
	case mode.IsRegular() && appending(parent+"/fdinfo/1"):
		flag |= os.O_APPEND
	default:
		return os.Stdout
	}
	f, err := os.OpenFile(parent+"/fd/1", flag, 0)
	if err != nil {
		return os.Stdout
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}

// appending reports a file descriptor, described by its /proc fdinfo file,
// that was opened with O_APPEND.
func appending(fdinfo string) bool {
	data, err := os.ReadFile(fdinfo)
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "flags:"); ok {
			flags, err := strconv.ParseInt(strings.TrimSpace(v), 8, 64)
			return err == nil && flags&int64(os.O_APPEND) != 0
		}
	}
	return false
}
