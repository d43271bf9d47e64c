package main

import (
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// libraryPath is the lockmgr library's module, which --version reports
// next to the CLI's own.
const libraryPath = "github.com/gormlock/lockmgr"

// addVersion gives root a --version flag (-v too) and a version command,
// both printing versionText of the running binary.
func (a *app) addVersion(root *cobra.Command) {
	bi, ok := debug.ReadBuildInfo()
	root.Version = versionText(bi, ok)
	root.SetVersionTemplate("{{.Version}}")
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print lockmgr's version, as 'go version -m' shows a binary's",
		Long: `version prints the CLI's module version, the lockmgr library's version it
was built with, the Go version, and the commit it was built from (vcs.*
lines, present when it was built from a Git checkout), in the shape of
'go version -m'. 'lockmgr --version' prints the same.`,
		Args: a.noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprint(cmd.OutOrStdout(), root.Version)
			return err
		},
	})
}

// versionText describes a binary from its build information: a first line
// "lockmgr VERSION", then the lines 'go version -m' prints for it, keeping
// the CLI's module, the library's and the VCS settings.
func versionText(bi *debug.BuildInfo, ok bool) string {
	if !ok || bi == nil {
		return "lockmgr (unknown version: built without module information)\n"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "lockmgr %s\n", orDevel(bi.Main.Version))
	fmt.Fprintf(&b, "\tgo\t%s\n", bi.GoVersion)
	fmt.Fprintf(&b, "\tpath\t%s\n", bi.Path)
	writeModule(&b, "mod", &bi.Main)
	for _, d := range bi.Deps {
		if d.Path == libraryPath {
			writeModule(&b, "dep", d)
		}
	}
	for _, s := range bi.Settings {
		if strings.HasPrefix(s.Key, "vcs") {
			fmt.Fprintf(&b, "\tbuild\t%s=%s\n", s.Key, s.Value)
		}
	}
	return b.String()
}

// writeModule writes one mod or dep line as 'go version -m' does:
// path, version and sum, and what replaces the module if anything does.
func writeModule(b *strings.Builder, kind string, m *debug.Module) {
	if m.Path == "" {
		return
	}
	fmt.Fprintf(b, "\t%s\t%s\t%s", kind, m.Path, orDevel(m.Version))
	if m.Sum != "" {
		fmt.Fprintf(b, "\t%s", m.Sum)
	}
	b.WriteString("\n")
	if r := m.Replace; r != nil {
		fmt.Fprintf(b, "\t=>\t%s\t%s", r.Path, r.Version)
		if r.Sum != "" {
			fmt.Fprintf(b, "\t%s", r.Sum)
		}
		b.WriteString("\n")
	}
}

// orDevel is v, or "(devel)" when the build recorded no version.
func orDevel(v string) string {
	if v == "" {
		return "(devel)"
	}
	return v
}
