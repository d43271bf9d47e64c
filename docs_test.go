package lockmgr_test

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"unicode"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The docs' own checks: README.md and docs/*.md link only to files and
// headings that exist, the README links every page, names the Go version
// go.mod declares and a test command that covers every module of go.work.

// expectedPages are the docs pages the README links that other branches
// write (the issue that adds each). Until a page lands, a link to it is
// not an error; once it exists, links to it and its headings are checked
// like any other.
var expectedPages = map[string]string{
	"docs/setup.md":           "issue 11: setup and migration, sharing the table with Django",
	"docs/poolers.md":         "issue 12: connection poolers and proxies",
	"docs/galera.md":          "issue 13: MariaDB Galera Cluster",
	"docs/distributed-sql.md": "issue 14: TiDB, CockroachDB, YugabyteDB, Vitess",
}

// testCommand is the README's command that runs every test: the root's
// packages, and through TestWorkspaceModules every other module of go.work.
const testCommand = "go test ./..."

var (
	mdLink    = regexp.MustCompile(`\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)
	goVersion = regexp.MustCompile(`\bGo (1\.\d+)\b`)
)

// inCheckout skips t outside a clone of the repository: in the module
// cache, the module's zip leaves out the nested modules (examples/, cmd/,
// reliability/, bench/) that the docs link and compile against.
func inCheckout(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(docsModule, "go.mod")); err != nil {
		t.Skipf("not a clone of the repository (%s/go.mod: %v)", docsModule, err)
	}
}

func TestDocsLinks(t *testing.T) {
	inCheckout(t)
	for _, file := range markdownFiles(t) {
		for _, l := range links(t, file) {
			target, anchor, _ := strings.Cut(l.target, "#")
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			path := filepath.ToSlash(filepath.Clean(filepath.Join(filepath.Dir(file), target)))
			if target == "" {
				path = filepath.ToSlash(file)
			}
			if _, err := os.Stat(path); err != nil {
				if _, ok := expectedPages[path]; !ok {
					t.Errorf("%s:%d: the link to %q leads nowhere: %s does not exist", file, l.line, l.target, path)
				}
				continue
			}
			if anchor != "" && strings.HasSuffix(path, ".md") && !headingAnchors(t, path)[anchor] {
				t.Errorf("%s:%d: the link to %q names no heading of %s", file, l.line, l.target, path)
			}
		}
	}
}

func TestReadmeLinksEveryPage(t *testing.T) {
	linked := map[string]bool{}
	for _, l := range links(t, "README.md") {
		target, _, _ := strings.Cut(l.target, "#")
		linked[filepath.ToSlash(filepath.Clean(target))] = true
	}
	pages := markdownFiles(t)[1:]
	for p := range expectedPages {
		pages = append(pages, p)
	}
	for _, p := range pages {
		assert.True(t, linked[filepath.ToSlash(p)], "README.md does not link %s", p)
	}
}

func TestReadmeGoVersion(t *testing.T) {
	mod, err := os.ReadFile("go.mod")
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^go (1\.\d+)(\.\d+)?$`).FindSubmatch(mod)
	require.NotNil(t, m, "go.mod has no go line")
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	found := goVersion.FindAllSubmatch(readme, -1)
	require.NotEmpty(t, found, "README.md names no Go version")
	for _, f := range found {
		assert.Equal(t, string(m[1]), string(f[1]), "README.md names Go %s; go.mod's go line is %s", f[1], m[1])
	}
	assert.NotContains(t, string(mod), "\ntoolchain ", "a toolchain line would make users' builds fetch a newer Go")
}

func TestReadmeTestCommandCoversWorkspace(t *testing.T) {
	inCheckout(t)
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	assert.Contains(t, string(readme), testCommand)
	work, err := os.ReadFile("go.work")
	require.NoError(t, err)
	dirs := workspaceDirs(string(work))
	require.Contains(t, dirs, ".")
	for _, dir := range dirs {
		_, err := os.Stat(filepath.Join(dir, "go.mod"))
		assert.NoError(t, err, "go.work uses %s, which TestWorkspaceModules tests, but it has no go.mod", dir)
	}
}

// workspaceDirs returns the directories go.work uses.
func workspaceDirs(work string) []string {
	var dirs []string
	in := false
	for _, line := range strings.Split(work, "\n") {
		line = strings.TrimSpace(strings.SplitN(line, "//", 2)[0])
		switch {
		case line == "use (":
			in = true
		case in && line == ")":
			in = false
		case in && line != "":
			dirs = append(dirs, filepath.Clean(line))
		case strings.HasPrefix(line, "use "):
			dirs = append(dirs, filepath.Clean(strings.TrimSpace(strings.TrimPrefix(line, "use "))))
		}
	}
	return dirs
}

// link is one Markdown link, and the line it is on.
type link struct {
	target string
	line   int
}

// links returns the links of a Markdown file outside its code blocks.
func links(t *testing.T, file string) []link {
	t.Helper()
	var out []link
	forEachProseLine(t, file, func(n int, line string) {
		for _, m := range mdLink.FindAllStringSubmatch(line, -1) {
			out = append(out, link{m[1], n})
		}
	})
	return out
}

// headingAnchors returns the anchors GitHub gives the headings of a
// Markdown file: lower case, punctuation dropped, spaces made hyphens.
func headingAnchors(t *testing.T, file string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	forEachProseLine(t, file, func(_ int, line string) {
		if !strings.HasPrefix(line, "#") {
			return
		}
		text := strings.TrimSpace(strings.TrimLeft(line, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(text) {
			switch {
			case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
				b.WriteRune(r)
			case r == ' ':
				b.WriteRune('-')
			}
		}
		out[b.String()] = true
	})
	return out
}

// forEachProseLine calls fn with each line of a Markdown file that is not
// inside a fenced code block, numbered from 1.
func forEachProseLine(t *testing.T, file string, fn func(n int, line string)) {
	t.Helper()
	data, err := os.ReadFile(file)
	require.NoError(t, err)
	fenced := false
	for i, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		if !fenced {
			fn(i+1, line)
		}
	}
}

// markdownFiles lists README.md and the pages in docs/.
func markdownFiles(t *testing.T) []string {
	t.Helper()
	pages, err := filepath.Glob(filepath.Join("docs", "*.md"))
	require.NoError(t, err)
	sort.Strings(pages)
	return append([]string{"README.md"}, pages...)
}

// markdownBlocks returns the ```go blocks of README.md and docs/*.md.
func markdownBlocks(t *testing.T) []codeBlock {
	t.Helper()
	var out []codeBlock
	for _, f := range markdownFiles(t) {
		out = append(out, fileBlocks(t, f)...)
	}
	return out
}

// fileBlocks returns the ```go blocks of one Markdown file.
func fileBlocks(t *testing.T, file string) []codeBlock {
	t.Helper()
	data, err := os.ReadFile(file)
	require.NoError(t, err)
	file = filepath.ToSlash(file)
	lines := strings.Split(string(data), "\n")
	var out []codeBlock
	for i := 0; i < len(lines); i++ {
		if strings.TrimSpace(lines[i]) != "```go" {
			continue
		}
		b := codeBlock{file: file, line: i + 2}
		for j := i - 1; j >= 0; j-- {
			if s := strings.TrimSpace(lines[j]); s != "" {
				if m := exampleMarker.FindStringSubmatch(s); m != nil {
					b.example = m[1]
				}
				break
			}
		}
		j := i + 1
		for j < len(lines) && strings.TrimSpace(lines[j]) != "```" {
			j++
		}
		require.Less(t, j, len(lines), "%s:%d: a ```go block that never ends", file, i+1)
		b.code = strings.Join(lines[i+1:j], "\n") + "\n"
		out = append(out, b)
		i = j
	}
	return out
}
