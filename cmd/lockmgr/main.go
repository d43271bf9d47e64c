// Command lockmgr is the admin CLI of the lockmgr library: it lists, sets,
// clears, resets and cleans the locks in a lockmgr (or django-lockmgr)
// table, creates that table, runs a command only while holding a lock,
// explains one lock, watches them live and serves metrics and a web page.
//
// Run "lockmgr --help" for the full manual.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/gormlock/lockmgr"
)

// Exit statuses. run also passes on its command's own status.
const (
	exitOK        = 0   // success
	exitFailure   = 1   // database, DSN or table problem; reset not confirmed
	exitSetHeld   = 2   // set --fail found a held name (django-lockmgr's code)
	exitUsage     = 64  // EX_USAGE: unknown command or flag, missing or invalid argument
	exitTempFail  = 75  // EX_TEMPFAIL: run found the lock held
	exitLockLost  = 76  // run lost its lock while the command ran
	exitCannotRun = 126 // run: the command exists but could not be started
	exitNotFound  = 127 // run: the command was not found
	exitSignal    = 128 // run: 128+N when the command was killed by signal N
)

func main() {
	os.Exit(execute(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// execute runs the CLI with args and returns its exit status. Everything
// it prints goes to stdout and stderr.
func execute(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	defer a.close()
	root := a.rootCommand()
	root.SetArgs(args)
	return a.exitCode(root.Execute())
}

// exitError ends the CLI with a given status. A nil err means the message
// was already printed.
type exitError struct {
	code int
	err  error
}

// Error is the message to print, or the status when there is none.
func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

// Unwrap returns the error being reported, if any.
func (e *exitError) Unwrap() error { return e.err }

// usageError is a command line the CLI does not understand; cmdPath names
// the command whose help explains it.
type usageError struct {
	cmdPath string
	err     error
}

// Error says what is wrong with the command line.
func (e *usageError) Error() string { return e.err.Error() }

// Unwrap returns the underlying parse or validation error.
func (e *usageError) Unwrap() error { return e.err }

// exitCode prints err, if any, as one line on stderr and maps it to an
// exit status.
func (a *app) exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			a.errorf("%s", oneLine(ee.err))
		}
		return ee.code
	}
	if errors.Is(err, lockmgr.ErrInvalidName) || errors.Is(err, lockmgr.ErrInvalidOption) {
		a.errorf("%s", oneLine(err))
		return exitUsage
	}
	var ue *usageError
	if errors.As(err, &ue) || !a.started {
		path := "lockmgr"
		if ue != nil {
			path = ue.cmdPath
		}
		a.errorf("%s\nRun '%s --help' for usage.", oneLine(err), path)
		return exitUsage
	}
	a.errorf("%s", oneLine(err))
	return exitFailure
}

// errorf prints "lockmgr: " and a message on stderr, with the DSN's
// password, should a driver's message repeat it, hidden.
func (a *app) errorf(format string, args ...any) {
	dsnText, _ := a.settings()
	fmt.Fprint(a.stderr, hidePassword("lockmgr: "+fmt.Sprintf(format, args...)+"\n", dsnText))
}

// oneLine folds a possibly multi-line error message into one line, and
// drops the "lockmgr: " prefixes of wrapped library errors: errorf adds one.
func oneLine(err error) string {
	msg := strings.TrimPrefix(err.Error(), "lockmgr: ")
	msg = strings.ReplaceAll(msg, ": lockmgr: ", ": ")
	lines := strings.Split(strings.TrimSpace(msg), "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return strings.Join(lines, "; ")
}
