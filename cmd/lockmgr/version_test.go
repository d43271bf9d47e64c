package main

import (
	"os/exec"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestVersionText(t *testing.T) {
	bi := &debug.BuildInfo{
		GoVersion: "go1.25.0",
		Path:      "github.com/gormlock/lockmgr/cmd/lockmgr",
		Main:      debug.Module{Path: "github.com/gormlock/lockmgr/cmd/lockmgr", Version: "v0.1.0", Sum: "h1:cli="},
		Deps: []*debug.Module{
			{Path: "github.com/spf13/cobra", Version: "v1.10.2", Sum: "h1:cobra="},
			{Path: libraryPath, Version: "v0.1.0", Sum: "h1:lib="},
		},
		Settings: []debug.BuildSetting{
			{Key: "-buildmode", Value: "exe"},
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
			{Key: "vcs.time", Value: "2026-11-28T23:00:00Z"},
			{Key: "vcs.modified", Value: "false"},
		},
	}
	assert.Equal(t, `lockmgr v0.1.0
	go	go1.25.0
	path	github.com/gormlock/lockmgr/cmd/lockmgr
	mod	github.com/gormlock/lockmgr/cmd/lockmgr	v0.1.0	h1:cli=
	dep	github.com/gormlock/lockmgr	v0.1.0	h1:lib=
	build	vcs=git
	build	vcs.revision=0123456789abcdef0123456789abcdef01234567
	build	vcs.time=2026-11-28T23:00:00Z
	build	vcs.modified=false
`, versionText(bi, true))

	// A checkout built with a replaced library, and no VCS information.
	bi.Main.Version, bi.Main.Sum, bi.Settings = "(devel)", "", nil
	bi.Deps[1].Replace = &debug.Module{Path: "../..", Version: "(devel)"}
	assert.Equal(t, `lockmgr (devel)
	go	go1.25.0
	path	github.com/gormlock/lockmgr/cmd/lockmgr
	mod	github.com/gormlock/lockmgr/cmd/lockmgr	(devel)
	dep	github.com/gormlock/lockmgr	v0.1.0	h1:lib=
	=>	../..	(devel)
`, versionText(bi, true))

	assert.Contains(t, versionText(nil, false), "unknown version")
}

// TestVersionFlag checks the built binary: --version, -v and version print
// the same text, and each line after the first is one that 'go version -m'
// prints for the binary.
func TestVersionFlag(t *testing.T) {
	t.Parallel()
	c := newCLI(t, testDB{"sqlite", "sqlite://" + t.TempDir() + "/locks.db"})
	out := c.ok("--version")
	assert.Equal(t, out, c.ok("-v"))
	assert.Equal(t, out, c.ok("version"))
	assert.Regexp(t, `^lockmgr (v\d+\.\d+\.\d+\S*|\(devel\))\n\tgo\tgo1\.\d+`, out)
	assert.Contains(t, out, "\tpath\tgithub.com/gormlock/lockmgr/cmd/lockmgr\n")
	assert.Contains(t, out, "\tmod\tgithub.com/gormlock/lockmgr/cmd/lockmgr\t")
	assert.Contains(t, out, "\tdep\tgithub.com/gormlock/lockmgr\t")

	goCmd, err := exec.LookPath("go")
	require.NoError(t, err)
	m, err := exec.Command(goCmd, "version", "-m", binPath).Output()
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	require.True(t, strings.HasSuffix(strings.SplitN(string(m), "\n", 2)[0], ": "+strings.TrimPrefix(lines[1], "\tgo\t")),
		"go version -m names another Go version:\n%s", m)
	for _, l := range lines[2:] {
		assert.Contains(t, strings.ReplaceAll(string(m), "\t\n", "\n"), l+"\n", "go version -m does not print this line")
	}

	r := c.run("version", "extra")
	assert.Equal(t, exitUsage, r.code)
}
