package main

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// cliDoc is the CLI's manual page, from this module's directory.
const cliDoc = "../../docs/cli.md"

// transcript is one "$ lockmgr ..." line of a ```text block of the docs and
// the output quoted after it.
type transcript struct {
	line    int // of the "$ " line
	command string
	output  string
}

// docScenario reproduces a transcript: setup runs first, in a fresh
// directory, with the default DSN and table; then args, whose output the
// transcript must quote.
type docScenario struct {
	what  string
	setup func(t *testing.T, c *cli)
	args  []string
}

// docScenarios are the situations docs/cli.md shows the output of.
var docScenarios = []docScenario{
	{"version", nil, []string{"--version"}},
	{"no database file yet", nil, []string{"list"}},
	{"a database without the table", func(t *testing.T, c *cli) {
		require.NoError(t, os.WriteFile(filepath.Join(c.dir, "lockmgr.db"), nil, 0o600))
	}, []string{"list"}},
	{"two locks", func(t *testing.T, c *cli) {
		c.ok("migrate")
		c.ok("set", "deploy", "--locked-by", "web1", "--process-id", "4242", "-t", "10m")
		c.ok("set", "maintenance", "-k", "--locked-by", "alice")
	}, []string{"list"}},
	{"explain a held lock", func(t *testing.T, c *cli) {
		c.ok("migrate")
		c.ok("set", "deploy", "--locked-by", "web1", "--process-id", "4242", "-t", "10m")
	}, []string{"explain", "deploy"}},
	{"held by alice", func(t *testing.T, c *cli) {
		c.ok("migrate")
		c.ok("set", "deploy", "--locked-by", "alice", "-t", "10m")
	}, []string{"run", "deploy", "--", "./deploy.sh"}},
}

// docNormal replaces what changes from run to run (times, durations,
// versions) with placeholders, in the docs and in the CLI's output alike.
var docNormal = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{1,6})?\+00:00`), "TIME"},
	{regexp.MustCompile(`expires in (<1s|[\dhms.]+)`), "expires in DURATION"},
	{regexp.MustCompile(`held (<1s|[\dhms.]+)`), "held DURATION"},
	{regexp.MustCompile(`fence:? +\d+`), "fence N"},
	{regexp.MustCompile(`token [0-9a-f]{8}`), "token TOKEN"},
	{regexp.MustCompile(`for (<1s|[\dhms.]+) more`), "for DURATION more"},
	{regexp.MustCompile(`(?m)^\tbuild\t.*\n`), ""}, // a binary built in a checkout
	{regexp.MustCompile(`\t(h1:\S+|=>.*)`), ""},
	{regexp.MustCompile(`\bgo1\.\d+(\.\d+)?\S*`), "GO"},
	{regexp.MustCompile(`\bv\d+\.\d+\.\d+\S*|\(devel\)`), "VERSION"},
}

func normalDoc(s string) string {
	for _, n := range docNormal {
		s = n.re.ReplaceAllString(s, n.with)
	}
	return strings.TrimRight(s, "\n")
}

// TestDocsQuoteTheCLI: every output docs/cli.md quotes after a "$ lockmgr"
// line is what the CLI prints in one of docScenarios, and every scenario is
// quoted; the inline quotes match the CLI's own text.
func TestDocsQuoteTheCLI(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(cliDoc)
	if os.IsNotExist(err) {
		t.Skipf("not a clone of the repository: %v", err)
	}
	require.NoError(t, err)
	doc := string(data)
	outputs := make([]string, len(docScenarios))
	for i, s := range docScenarios {
		c := &cli{t: t, db: testDB{"sqlite", defaultDSN}, table: defaultTable, dir: t.TempDir()}
		if s.setup != nil {
			s.setup(t, c)
		}
		r := c.run(s.args...)
		outputs[i] = normalDoc(r.stdout + r.stderr)
	}
	quoted := make([]bool, len(docScenarios))
	ts := transcripts(t, doc)
	require.NotEmpty(t, ts)
	for _, tr := range ts {
		want := normalDoc(tr.output)
		found := false
		for i, s := range docScenarios {
			if tr.command == "lockmgr "+strings.Join(s.args, " ") && outputs[i] == want {
				found, quoted[i] = true, true
			}
		}
		if !found {
			var prints []string
			for i, s := range docScenarios {
				if tr.command == "lockmgr "+strings.Join(s.args, " ") {
					prints = append(prints, s.what+":\n"+outputs[i])
				}
			}
			t.Errorf("%s:%d: `%s` quotes\n%s\nbut the CLI prints (normalized)\n%s", cliDoc, tr.line, tr.command, want, strings.Join(prints, "\n--\n"))
		}
	}
	for i, s := range docScenarios {
		assert.True(t, quoted[i], "%s does not show `lockmgr %s` for %s", cliDoc, strings.Join(s.args, " "), s.what)
	}

	assert.Contains(t, doc, "`"+resetPrompt+"`", "reset's question")
	var fields []string
	lj := reflect.TypeFor[lockJSON]()
	for i := range lj.NumField() {
		name, _, _ := strings.Cut(lj.Field(i).Tag.Get("json"), ",")
		fields = append(fields, `"`+name+`"`)
	}
	assert.Contains(t, strings.Join(strings.Fields(doc), " "), "{"+strings.Join(fields, ", ")+"}", "a LOCK's fields, in order")
}

// transcripts returns the "$ lockmgr" lines of doc's ```text blocks with
// the lines after each, up to the next "$ " line or the block's end.
func transcripts(t *testing.T, doc string) []transcript {
	t.Helper()
	var out []transcript
	var cur *transcript
	inText := false
	for i, line := range strings.Split(doc, "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case !inText && trimmed == "```text":
			inText = true
		case !inText:
		case trimmed == "```" || strings.HasPrefix(trimmed, "$ "):
			if cur != nil {
				out = append(out, *cur)
				cur = nil
			}
			inText = trimmed != "```"
			if cmd, ok := strings.CutPrefix(trimmed, "$ "); ok && strings.HasPrefix(cmd, "lockmgr ") {
				cur = &transcript{line: i + 1, command: cmd}
			}
		case cur != nil:
			cur.output += strings.TrimLeft(line, " ") + "\n" // a list item's indent; tabs are output
		}
	}
	require.False(t, inText, "%s: a ```text block that never ends", cliDoc)
	return out
}
