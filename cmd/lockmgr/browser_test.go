package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// chromiumPath finds Debian's headless Chromium, or skips t saying how to
// get it.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("LOCKMGR_TEST_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("LOCKMGR_TEST_REQUIRE_CHROMIUM") == "1" {
		t.Fatal("Chromium is not installed, and LOCKMGR_TEST_REQUIRE_CHROMIUM=1 (CI) requires it")
	}
	t.Skip("Chromium is not installed (apt-get install chromium, or set LOCKMGR_TEST_CHROMIUM): the serve page's browser test cannot run")
	return ""
}

// chromium runs headless Chromium with args and a profile of its own, and
// returns its stdout.
func chromium(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir=" + t.TempDir()}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	cmd.WaitDelay = 5 * time.Second
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "chromium %q: %s", args, stderr.String())
	return string(out)
}

// TestServePageInABrowser loads serve's page in headless Chromium: the DOM
// after its script ran shows the locks and live countdowns, and a
// screenshot of it is a real picture.
func TestServePageInABrowser(t *testing.T) {
	bin := chromiumPath(t)
	t.Parallel()
	c := newCLI(t, testDB{"sqlite", "sqlite://" + filepath.Join(t.TempDir(), "locks.db")})
	c.ok("migrate")
	c.ok("set", "deploy", "-t", "10m", "--locked-by", "web1", "--process-id", "4242")
	c.ok("set", "invoice:7", "-t", "90s", "--locked-by", "worker-3")
	c.ok("set", "maintenance", "-k", "--locked-by", "alice")
	p, base := c.startServe()
	defer func() { _ = p.cmd.Process.Signal(os.Interrupt); p.wait(10 * time.Second) }()

	start := time.Now()
	dom := chromium(t, bin, "--virtual-time-budget=1500", "--dump-dom", base+"/")
	assert.Contains(t, dom, `<body data-ticked="yes">`, "the countdown script ran")
	assert.Contains(t, dom, "3 live, 0 expired rows not yet cleaned")
	rows := regexp.MustCompile(`(?s)<tr class="lock" data-name="([^"]+)">.*?</tr>`).FindAllStringSubmatch(dom, -1)
	require.Len(t, rows, 3, dom)
	assert.Equal(t, []string{"deploy", "invoice:7", "maintenance"}, []string{rows[0][1], rows[1][1], rows[2][1]})
	assert.Regexp(t, `<td class="holder">web1</td><td class="num pid">4242</td>`, rows[0][0])
	assert.Regexp(t, `<td class="num left" data-until-ms="\d+">(9m[0-5]\ds|10m0s)</td>`, rows[0][0], "the script's countdown (its own format: 9m58s)")
	assert.Regexp(t, `<td class="num left" data-until-ms="\d+">1m[0-3]\ds</td>`, rows[1][0])
	assert.Contains(t, rows[2][0], `<td class="num left" data-until-ms="0">never</td>`)

	shot := filepath.Join(t.TempDir(), "serve.png")
	chromium(t, bin, "--screenshot="+shot, "--window-size=1200,800", "--hide-scrollbars", base+"/")
	info, err := os.Stat(shot)
	require.NoError(t, err, "the screenshot")
	assert.Greater(t, info.Size(), int64(10_000), "a 1200x800 picture of a page with a table, not a blank one")
	png, err := os.ReadFile(shot)
	require.NoError(t, err)
	assert.Equal(t, "\x89PNG\r\n\x1a\n", string(png[:8]))
	if dir := os.Getenv("LOCKMGR_TEST_SCREENSHOT_DIR"); dir != "" { // to look at it
		require.NoError(t, os.WriteFile(filepath.Join(dir, "serve.png"), png, 0o644))
	}
	t.Logf("Chromium: DOM and screenshot in %s", time.Since(start).Round(time.Millisecond))
}
