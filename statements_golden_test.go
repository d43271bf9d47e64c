package lockmgr

import (
	flagpkg "flag"
	"fmt"
	"github.com/gormlock/lockmgr/internal/engine"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// update rewrites testdata/statements.golden from the current code:
// go test -run TestStatementsGolden -update .
var updateGolden = flagpkg.Bool("update", false, "rewrite testdata/statements.golden")

// goldenVariants are the dialects New builds, one per server it tells
// apart (engine.Detect), each for a plain and a schema-qualified table.
var goldenVariants = []struct {
	name, kind string
	srv        engine.Server
}{
	{"postgres", "postgres", engine.Server{Returning: true, NameCollation: "utf8mb4_nopad_bin"}},
	{"mysql-unknown-version", "mysql", engine.Server{Returning: true, NameCollation: "utf8mb4_nopad_bin"}},
	{"mariadb-10.4", "mysql", engine.Server{Returning: false, NameCollation: "utf8mb4_nopad_bin", MariaDB: true}},
	{"mariadb-galera-capable", "mysql", engine.Server{Returning: true, NameCollation: "utf8mb4_nopad_bin", MariaDB: true}},
	{"mysql8", "mysql", engine.Server{Returning: false, NameCollation: "utf8mb4_0900_bin"}},
	{"tidb", "mysql", engine.Server{Returning: false, NameCollation: "utf8mb4_0900_bin", TiDB: true}},
	{"sqlite", "sqlite", engine.Server{Returning: true, NameCollation: "utf8mb4_nopad_bin"}},
}

// TestStatementsGolden pins every compiled statement of every dialect to
// testdata/statements.golden: what lockmgr sends to each database.
func TestStatementsGolden(t *testing.T) {
	var b strings.Builder
	for _, v := range goldenVariants {
		for _, table := range []string{"lockmgr_lock", "app.locks"} {
			d, err := newDialect(v.kind, table, v.srv)
			if err != nil {
				t.Fatalf("%s %s: %v", v.name, table, err)
			}
			fmt.Fprintf(&b, "### %s %s\n", v.name, table)
			dumpDialect(&b, d)
		}
	}
	const path = "testdata/statements.golden"
	if *updateGolden {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := b.String(); got != string(want) {
		t.Errorf("statements differ from %s (go test -run TestStatementsGolden -update .):\n%s", path, firstDiff(got, string(want)))
	}
}

// dumpDialect writes d's string and bool fields and every stmt, by field name.
func dumpDialect(b *strings.Builder, d *dialect) {
	v := reflect.ValueOf(d).Elem()
	names := make([]string, 0, v.NumField())
	for i := range v.NumField() {
		names = append(names, v.Type().Field(i).Name)
	}
	sort.Strings(names)
	keys := make(map[argKey]string, len(argNames))
	for n, k := range argNames {
		keys[k] = n
	}
	for _, n := range names {
		f := v.FieldByName(n)
		switch {
		case f.Kind() == reflect.String || f.Kind() == reflect.Bool:
			fmt.Fprintf(b, "%s: %v\n", n, f)
		case f.Type() == reflect.TypeOf(stmt{}):
			fmt.Fprintf(b, "%s:\n", n)
			for _, part := range []string{"sql", "native"} {
				fmt.Fprintf(b, "  %s: %s\n", part, f.FieldByName(part).String())
			}
			forms := f.FieldByName("forms")
			for _, part := range []struct{ name, field string }{{"synced", "Synced"}, {"bounded", "Bounded"}, {"boundedSynced", "BoundedSynced"}} {
				fmt.Fprintf(b, "  %s: %s\n", part.name, forms.FieldByName(part.field).String())
			}
			args := f.FieldByName("args")
			var order []string
			for i := range args.Len() {
				order = append(order, keys[argKey(args.Index(i).Int())])
			}
			fmt.Fprintf(b, "  args: %s\n  reads: %v\n", strings.Join(order, ","), f.FieldByName("reads").Bool())
		}
	}
}

// firstDiff shows the first line where got and want differ.
func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range min(len(g), len(w)) {
		if g[i] != w[i] {
			return fmt.Sprintf("line %d\n got: %s\nwant: %s", i+1, g[i], w[i])
		}
	}
	return fmt.Sprintf("%d lines, want %d", len(g), len(w))
}
