package lockmgr_test

import (
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// envNested set to 0 skips TestWorkspaceModules, for a run that names the
// nested modules itself (go test github.com/gormlock/lockmgr/...).
const envNested = "LOCKMGR_TEST_NESTED"

// TestWorkspaceModules runs the tests of the workspace's other modules —
// the CLI, the examples and the reliability tests, kept apart so that the
// library's users do not inherit their dependencies — so that `go test
// ./...` at the root of a checkout runs every test: the ./... pattern stops
// at a nested go.mod. The nested run gets this run's -race, -count, -short
// and -timeout, and prints its package lines here.
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
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	t.Logf("go %v", args)
	require.NoError(t, cmd.Run(), "the nested modules' tests failed; their output is above")
}
