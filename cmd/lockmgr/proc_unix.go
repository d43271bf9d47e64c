//go:build linux || darwin || freebsd

package main

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"syscall"
	"unsafe"
)

// forwardedSignals are passed on from lockmgr run to its command.
var forwardedSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT}

// child is the command lockmgr run supervises.
type child struct {
	cmd *exec.Cmd
	// group: the child leads its own process group and signals go to the
	// whole group. Otherwise it shares lockmgr's group in the foreground of
	// a terminal, which sends it the keyboard's signals itself.
	group bool
}

// startChild starts argv with the given streams. Without a terminal in the
// foreground it gets its own process group.
func startChild(argv []string, stdin io.Reader, stdout, stderr io.Writer) (*child, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	c := &child{cmd: cmd, group: !inTerminalForeground(stdin, stdout, stderr)}
	if c.group {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return c, nil
}

// wait waits for the child and returns its status as a shell reports it.
func (c *child) wait() int {
	_ = c.cmd.Wait() // the status is in ProcessState
	if c.cmd.ProcessState == nil {
		return exitFailure // the child could not be waited for
	}
	if ws, ok := c.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return exitSignal + int(ws.Signal())
	}
	return c.cmd.ProcessState.ExitCode()
}

// forward passes sig on, except the keyboard's signals when the terminal
// has already sent them to the child.
func (c *child) forward(sig os.Signal) {
	s, ok := sig.(syscall.Signal)
	if !ok {
		return
	}
	if !c.group && (s == syscall.SIGINT || s == syscall.SIGQUIT || s == syscall.SIGHUP) {
		return
	}
	c.signal(s)
}

// terminate asks the child to stop.
func (c *child) terminate() { c.signal(syscall.SIGTERM) }

// kill stops the child.
func (c *child) kill() { c.signal(syscall.SIGKILL) }

// signal sends s to the child's group or to the child; a child that is
// already gone is no error.
func (c *child) signal(s syscall.Signal) {
	pid := c.cmd.Process.Pid
	if c.group {
		_ = syscall.Kill(-pid, s)
		return
	}
	_ = syscall.Kill(pid, s)
}

// startFailureStatus is the shell's status for a command that did not
// start: 127 when not found, else 126.
func startFailureStatus(err error) int {
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
		return exitNotFound
	}
	return exitCannotRun
}

// signalStatus is 128+N for signal N.
func signalStatus(sig os.Signal) int {
	if s, ok := sig.(syscall.Signal); ok {
		return exitSignal + int(s)
	}
	return exitFailure
}

// signalName is SIGTERM for syscall.SIGTERM, and so on.
func signalName(sig os.Signal) string {
	switch sig {
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGHUP:
		return "SIGHUP"
	case syscall.SIGQUIT:
		return "SIGQUIT"
	}
	return sig.String()
}

// inTerminalForeground reports whether one of the streams is a terminal
// whose foreground process group is lockmgr's.
func inTerminalForeground(streams ...any) bool {
	own := syscall.Getpgrp()
	for _, s := range streams {
		f, ok := s.(*os.File)
		if !ok {
			continue
		}
		if pgrp, ok := foregroundGroup(f.Fd()); ok {
			return pgrp == own
		}
	}
	return false
}

// isTerminal reports whether s is a terminal.
func isTerminal(s any) bool {
	f, ok := s.(*os.File)
	if !ok {
		return false
	}
	_, ok = foregroundGroup(f.Fd())
	return ok
}

// foregroundGroup is tcgetpgrp(3): false when fd is not a terminal.
func foregroundGroup(fd uintptr) (int, bool) {
	var pgrp int32
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, uintptr(syscall.TIOCGPGRP), uintptr(unsafe.Pointer(&pgrp)))
	return int(pgrp), errno == 0
}
