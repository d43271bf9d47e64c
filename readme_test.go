package lockmgr_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"go/ast"
	"go/doc/comment"
	"go/format"
	"go/parser"
	"go/scanner"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The docs check: every Go code block in README.md, in docs/*.md and in the
// package comment in doc.go must compile against the current API.
//
//   - A block that starts with a package clause is a complete file and is
//     compiled as it is.
//   - Any other block is a fragment. Statements are compiled as the body of
//     a function returning an error (so a fragment may `return`, `return
//     err` or `return nil`); declarations (func, type, …) at the top level
//     of a file. Either way the file declares `ctx context.Context`,
//     `db *gorm.DB` and `m *lockmgr.Manager`, which fragments use freely, and
//     imports the packages the fragment names from a fixed table (knownImports).
//   - A Markdown block preceded by `<!-- example: ExampleName -->` must also
//     be a verbatim excerpt of that Example function in example_test.go, so
//     the docs show code that `go test` runs and checks the output of.
//
// Each block becomes a package in a temporary directory inside the examples
// module (docsModule), whose go.mod requires everything the docs import
// (Prometheus too, which the library's own go.mod does not), and one
// `go vet` checks them all. docs_test.go checks the docs' links.

// knownImports maps the package names fragments may use to their paths.
var knownImports = map[string]string{
	"context":  "context",
	"errors":   "errors",
	"fmt":      "fmt",
	"http":     "net/http",
	"log":      "log",
	"os":       "os",
	"signal":   "os/signal",
	"slog":     "log/slog",
	"sql":      "database/sql",
	"strings":  "strings",
	"sync":     "sync",
	"time":     "time",
	"gorm":     "gorm.io/gorm",
	"clause":   "gorm.io/gorm/clause",
	"logger":   "gorm.io/gorm/logger",
	"sqlite":   "gorm.io/driver/sqlite",
	"postgres": "gorm.io/driver/postgres",
	"mysql":    "gorm.io/driver/mysql",
	"lockmgr":  "github.com/gormlock/lockmgr",
	"pgnotify": "github.com/gormlock/lockmgr/pgnotify",
	// Modules of the workspace, which the docs module sees through go.work.
	"gocronlock":  "github.com/gormlock/lockmgr/gocronlock",
	"gocron":      "github.com/go-co-op/gocron/v2",
	"lockmgrtest": "github.com/gormlock/lockmgr/lockmgrtest",
	"otellockmgr": "github.com/gormlock/lockmgr/otellockmgr",
	"otel":        "go.opentelemetry.io/otel",
	"sdktrace":    "go.opentelemetry.io/otel/sdk/trace",
	"testing":     "testing",
	"prometheus":  "github.com/prometheus/client_golang/prometheus",
	"promhttp":    "github.com/prometheus/client_golang/prometheus/promhttp",
}

// preamble names the variables every fragment may use, and their types.
var preamble = []struct{ name, typ string }{
	{"ctx", "context.Context"},
	{"db", "*gorm.DB"},
	{"m", "*lockmgr.Manager"},
}

// codeBlock is one Go code block of the documentation.
type codeBlock struct {
	file    string // where it is: README.md, docs/NAME.md or doc.go
	line    int    // the line of its first line of code
	code    string
	example string // the Example it must be an excerpt of, if any
}

// docsModule is the directory of the module the docs' code is compiled in.
const docsModule = "examples"

func TestDocsCompile(t *testing.T) {
	inCheckout(t)
	blocks := append(markdownBlocks(t), docBlocks(t)...)
	require.NotEmpty(t, blocks)
	dir, err := os.MkdirTemp(docsModule, "_docscheck")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	rel, err := filepath.Rel(docsModule, dir)
	require.NoError(t, err)

	type written struct {
		block  codeBlock
		offset int // the generated file's line just before the block's first line
	}
	files := map[string]written{}
	var pkgs []string
	for i, b := range blocks {
		src, offset, err := wrap(b)
		if err != nil {
			t.Errorf("the Go block at %s:%d does not parse: %v", b.file, b.line, err)
			continue
		}
		sub := fmt.Sprintf("b%02d", i)
		require.NoError(t, os.Mkdir(filepath.Join(dir, sub), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, sub, "main.go"), src, 0o644))
		files[filepath.ToSlash(filepath.Join(rel, sub, "main.go"))] = written{b, offset}
		pkgs = append(pkgs, "./"+filepath.ToSlash(filepath.Join(rel, sub)))
	}
	if len(pkgs) == 0 {
		return
	}
	goCmd, err := exec.LookPath("go")
	require.NoError(t, err, "the docs check runs the go command")
	cmd := exec.Command(goCmd, append([]string{"vet", "-unreachable=false"}, pkgs...)...)
	cmd.Dir = docsModule
	out, err := cmd.CombinedOutput()
	if err == nil {
		return
	}
	// Point every complaint at the documentation line it comes from.
	pos := regexp.MustCompile(`^(?:vet: )?(?:\./)?(\S+/main\.go):(\d+)(?::(\d+))?: (.*)$`)
	var msgs []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		m := pos.FindStringSubmatch(line)
		if m == nil {
			if !strings.HasPrefix(line, "#") {
				msgs = append(msgs, line)
			}
			continue
		}
		w, ok := files[m[1]]
		n, _ := strconv.Atoi(m[2])
		switch {
		case !ok:
			msgs = append(msgs, line)
		case n <= w.offset:
			msgs = append(msgs, fmt.Sprintf("%s:%d: in the imports or variables the check adds to the block: %s",
				w.block.file, w.block.line, m[4]))
		default:
			msgs = append(msgs, fmt.Sprintf("%s:%d: %s", w.block.file, w.block.line+n-w.offset-1, m[4]))
		}
	}
	t.Errorf("Go code in the documentation does not compile against the current API:\n%s\n\n(go vet: %v)",
		strings.Join(msgs, "\n"), err)
}

func TestDocsAreGofmted(t *testing.T) {
	for _, b := range append(markdownBlocks(t), docBlocks(t)...) {
		formatted, err := format.Source([]byte(b.code))
		if err != nil {
			continue // TestDocsCompile reports it
		}
		if string(formatted) != b.code {
			t.Errorf("%s:%d: the Go block is not gofmt-ed; gofmt makes it:\n%s", b.file, b.line, formatted)
		}
	}
}

func TestReadmeExamplesAreExcerpts(t *testing.T) {
	bodies := exampleBodies(t)
	n := 0
	readme := 0
	for _, b := range markdownBlocks(t) {
		if b.example == "" {
			continue
		}
		n++
		if b.file == "README.md" {
			readme++
		}
		body, ok := bodies[b.example]
		if !ok {
			t.Errorf("%s:%d: the block names %s, which example_test.go does not have", b.file, b.line, b.example)
			continue
		}
		if !strings.Contains("\n"+body, "\n"+dedent(b.code)) {
			t.Errorf("%s:%d: the block is not a verbatim excerpt of %s in example_test.go:\n%s",
				b.file, b.line, b.example, b.code)
		}
	}
	require.Positive(t, readme, "README.md marks no block with <!-- example: … -->")
	require.Greater(t, n, readme, "docs/*.md mark no block with <!-- example: … -->")
}

var exampleMarker = regexp.MustCompile(`^<!--\s*example:\s*(\w+)\s*-->$`)

// docBlocks returns the code blocks of the package comment in doc.go.
func docBlocks(t *testing.T) []codeBlock {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "doc.go", nil, parser.ParseComments|parser.PackageClauseOnly)
	require.NoError(t, err)
	require.NotNil(t, f.Doc, "doc.go has no package comment")
	text := f.Doc.Text()
	var out []codeBlock
	var p comment.Parser
	for _, blk := range p.Parse(text).Content {
		code, ok := blk.(*comment.Code)
		if !ok {
			continue
		}
		// Find the block's line: the comment's first line, plus where its
		// first line of code falls in the comment's text.
		first := strings.SplitN(code.Text, "\n", 2)[0]
		line := fset.Position(f.Doc.Pos()).Line
		if k := strings.Index(text, first); k >= 0 {
			line += strings.Count(text[:k], "\n")
		}
		out = append(out, codeBlock{file: "doc.go", line: line, code: code.Text})
	}
	return out
}

// wrap turns a block into a Go file, returning it and the file's line just
// before the block's first line.
func wrap(b codeBlock) ([]byte, int, error) {
	if isCompleteFile(b.code) {
		return []byte(b.code), 0, nil
	}
	stmts := "func _() (_ error) {\n" + b.code + "\nreturn\n}\n"
	_, stmtErr := parser.ParseFile(token.NewFileSet(), "", "package p\n"+stmts, 0)
	if stmtErr == nil {
		return assemble(b.code, stmts, 1, nil)
	}
	f, declErr := parser.ParseFile(token.NewFileSet(), "", "package p\n"+b.code, 0)
	if declErr != nil {
		// Report the error of the reading the block looks meant for, at
		// its line in the documentation.
		err, lead := stmtErr, 2
		if regexp.MustCompile(`(?m)^(func|type) `).MatchString(b.code) {
			err, lead = declErr, 1
		}
		var list scanner.ErrorList
		if errors.As(err, &list) && len(list) > 0 {
			return nil, 0, fmt.Errorf("%s:%d: %s", b.file, b.line+list[0].Pos.Line-1-lead, list[0].Msg)
		}
		return nil, 0, err
	}
	declared := map[string]bool{}
	for _, d := range f.Decls {
		if g, ok := d.(*ast.GenDecl); ok {
			for _, s := range g.Specs {
				if v, ok := s.(*ast.ValueSpec); ok {
					for _, n := range v.Names {
						declared[n.Name] = true
					}
				}
			}
		}
	}
	return assemble(b.code, b.code, 0, declared)
}

// assemble writes the package clause, imports and preamble, then body, in
// which the block's code starts after bodyLead lines. It returns the file
// and the file's line just before the block's first line.
func assemble(code, body string, bodyLead int, declared map[string]bool) ([]byte, int, error) {
	var vars []string
	used := usedPackages(code)
	for _, v := range preamble {
		if !declared[v.name] {
			vars = append(vars, "\t"+v.name+" "+v.typ)
			used = append(used, usedPackages(v.typ)...)
		}
	}
	paths := map[string]bool{}
	for _, pkg := range used {
		p := knownImports[pkg]
		if p[strings.LastIndex(p, "/")+1:] != pkg { // a name that is not the path's: sdktrace
			paths[pkg+" "+strconv.Quote(p)] = true
			continue
		}
		paths[strconv.Quote(p)] = true
	}
	imports := make([]string, 0, len(paths))
	for p := range paths {
		imports = append(imports, "\t"+p)
	}
	sort.Strings(imports)
	head := "package readme\n\nimport (\n" + strings.Join(imports, "\n") + "\n)\n"
	if len(vars) > 0 {
		head += "\nvar (\n" + strings.Join(vars, "\n") + "\n)\n"
	}
	fhead, err := format.Source([]byte(head))
	if err != nil {
		return nil, 0, err
	}
	src := append(append(fhead, '\n'), body...)
	// The head's lines, the blank line, then bodyLead lines of the body.
	before := strings.Count(string(fhead), "\n") + 1 + bodyLead
	// gofmt the whole file when that keeps every line where it is, so a
	// copy left behind by a killed test does not upset gofmt -l.
	if f, err := format.Source(src); err == nil && bytes.Count(f, []byte("\n")) == bytes.Count(src, []byte("\n")) {
		src = f
	}
	return src, before, nil
}

// usedPackages lists the known packages code refers to as pkg.Name.
func usedPackages(code string) []string {
	var s scanner.Scanner
	fset := token.NewFileSet()
	src := []byte(code)
	s.Init(fset.AddFile("", fset.Base(), len(src)), src, nil, 0)
	seen := map[string]bool{}
	var out []string
	prev := ""
	for {
		_, tok, lit := s.Scan()
		if tok == token.EOF {
			break
		}
		if tok == token.PERIOD && prev != "" && knownImports[prev] != "" && !seen[prev] {
			seen[prev] = true
			out = append(out, prev)
		}
		prev = ""
		if tok == token.IDENT {
			prev = lit
		}
	}
	return out
}

func isCompleteFile(code string) bool {
	for _, line := range strings.Split(code, "\n") {
		s := strings.TrimSpace(line)
		if s == "" || strings.HasPrefix(s, "//") {
			continue
		}
		return strings.HasPrefix(s, "package ")
	}
	return false
}

// exampleBodies returns the body of each function in example_test.go,
// dedented by one tab.
func exampleBodies(t *testing.T) map[string]string {
	t.Helper()
	src, err := os.ReadFile("example_test.go")
	require.NoError(t, err)
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "example_test.go", src, parser.ParseComments)
	require.NoError(t, err)
	out := map[string]string{}
	for _, d := range f.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || fn.Body == nil {
			continue
		}
		body := string(src[fset.Position(fn.Body.Lbrace).Offset+1 : fset.Position(fn.Body.Rbrace).Offset])
		out[fn.Name.Name] = dedent(body)
	}
	return out
}

// dedent removes the indentation all non-blank lines share, and blanks
// lines that hold only white space.
func dedent(s string) string {
	lines := strings.Split(s, "\n")
	prefix, have := "", false
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		indent := l[:len(l)-len(strings.TrimLeft(l, " \t"))]
		if !have {
			prefix, have = indent, true
			continue
		}
		n := 0
		for n < len(prefix) && n < len(indent) && prefix[n] == indent[n] {
			n++
		}
		prefix = prefix[:n]
	}
	for i, l := range lines {
		if strings.TrimSpace(l) == "" {
			lines[i] = ""
		} else {
			lines[i] = strings.TrimPrefix(l, prefix)
		}
	}
	return strings.Join(lines, "\n")
}
