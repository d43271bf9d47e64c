//go:build !(linux || darwin || freebsd)

package main

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
)

// forwardedSignals are passed on from lockmgr run to its command. Here
// only an interrupt can be caught.
var forwardedSignals = []os.Signal{os.Interrupt}

// child is the command lockmgr run supervises.
type child struct{ cmd *exec.Cmd }

// startChild starts argv with the given streams.
func startChild(argv []string, stdin io.Reader, stdout, stderr io.Writer) (*child, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &child{cmd: cmd}, nil
}

// wait waits for the child and returns its exit status.
func (c *child) wait() int {
	_ = c.cmd.Wait() // the status is in ProcessState
	if c.cmd.ProcessState == nil || c.cmd.ProcessState.ExitCode() < 0 {
		return exitFailure
	}
	return c.cmd.ProcessState.ExitCode()
}

// forward passes sig on where the platform can.
func (c *child) forward(sig os.Signal) { _ = c.cmd.Process.Signal(sig) }

// terminate stops the child; without SIGTERM it is killed.
func (c *child) terminate() { _ = c.cmd.Process.Kill() }

// kill stops the child.
func (c *child) kill() { _ = c.cmd.Process.Kill() }

// startFailureStatus is the shell's status for a command that did not
// start: 127 when not found, else 126.
func startFailureStatus(err error) int {
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
		return exitNotFound
	}
	return exitCannotRun
}

// signalStatus is the status for a signal that ended a wait.
func signalStatus(os.Signal) int { return exitSignal + 2 }

// signalName names sig.
func signalName(sig os.Signal) string { return sig.String() }

// isTerminal reports whether s is a terminal; here it cannot tell, and
// says no.
func isTerminal(any) bool { return false }
