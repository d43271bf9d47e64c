package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// envWorker, when set, makes this program a hand-off worker process: the
// value is its handoffSpec as JSON. The parent re-executes its own binary
// (go run's, or go test's) with it set.
const envWorker = "LOCKMGR_BENCH_WORKER"

// isWorker reports whether this process was started as a worker.
func isWorker() bool { return os.Getenv(envWorker) != "" }

// workerMain is a worker process's whole life. Protocol on stdin/stdout:
// it prints "ready", reads "go <startUnixNano> <endUnixNano>", runs the
// hold loop between those instants and prints its workerOut as JSON.
func workerMain() int {
	if err := runWorker(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench worker:", err)
		return 1
	}
	return 0
}

func runWorker(in io.Reader, out io.Writer) error {
	var spec handoffSpec
	if err := json.Unmarshal([]byte(os.Getenv(envWorker)), &spec); err != nil {
		return fmt.Errorf("spec: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lk, cleanup, err := workerLocker(ctx, spec)
	if err != nil {
		return err
	}
	defer cleanup()
	s, err := lk.session(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = s.close() }()
	if _, err := fmt.Fprintln(out, "ready"); err != nil {
		return err
	}
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil {
		return fmt.Errorf("waiting for go: %w", err)
	}
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != "go" {
		return fmt.Errorf("bad go line %q", line)
	}
	startNs, err1 := strconv.ParseInt(f[1], 10, 64)
	endNs, err2 := strconv.ParseInt(f[2], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("bad go line %q: %w", line, err)
	}
	time.Sleep(time.Until(time.Unix(0, startNs)))
	res := holdLoop(ctx, s, spec, time.Unix(0, endNs))
	return json.NewEncoder(out).Encode(res)
}

// workerLocker builds the locker a spec names, on tables the parent made.
func workerLocker(ctx context.Context, spec handoffSpec) (locker, func(), error) {
	if spec.Locker == lkRedis {
		r, err := newRedisLocker(ctx, spec.RedisAddr, spec.Salt, 2)
		if err != nil {
			return nil, nil, err
		}
		return r, func() { _ = r.close() }, nil
	}
	t, err := openTarget(ctx, spec.Kind, spec.DSN, 2)
	if err != nil {
		return nil, nil, err
	}
	t.tables, t.salt = spec.Tables, spec.Salt
	lk, err := buildLocker(ctx, t, spec.Locker, lockerOpts{DjangoPoll: spec.DjangoPoll}, false)
	if err != nil {
		_ = t.close()
		return nil, nil, err
	}
	return lk, func() { _ = lk.close(); _ = t.close() }, nil
}

// handoffProcesses runs the workers as separate processes, one worker each.
func handoffProcesses(ctx context.Context, spec handoffSpec, workers int, dur time.Duration) (handoffResult, error) {
	failed := handoffResult{Mode: "cross-process", Duration: dur, Workers: workers}
	exe, err := os.Executable()
	if err != nil {
		return failed, err
	}
	procs := make([]*workerProc, workers)
	defer func() {
		for _, p := range procs {
			if p != nil {
				p.kill()
			}
		}
	}()
	for w := range procs {
		sp := spec
		sp.Worker = w
		p, err := startWorker(ctx, exe, sp)
		if err != nil {
			return failed, fmt.Errorf("worker %d: %w", w, err)
		}
		procs[w] = p
	}
	for w, p := range procs {
		if err := p.waitReady(30 * time.Second); err != nil {
			return failed, fmt.Errorf("worker %d: %w", w, err)
		}
	}
	start := time.Now().Add(50 * time.Millisecond)
	end := start.Add(dur)
	for w, p := range procs {
		if _, err := fmt.Fprintf(p.stdin, "go %d %d\n", start.UnixNano(), end.UnixNano()); err != nil {
			return failed, fmt.Errorf("worker %d: %w", w, err)
		}
	}
	outs := make([]workerOut, workers)
	var errs []error
	for w, p := range procs {
		o, err := p.result(dur + 60*time.Second)
		if err != nil {
			errs = append(errs, fmt.Errorf("worker %d: %w", w, err))
		}
		outs[w] = o
	}
	res := analyzeHandoff(outs, workers)
	res.Mode, res.Duration = "cross-process", dur
	return res, errors.Join(errs...)
}

// workerProc is a running worker process.
type workerProc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	stderr *lockedBuffer
}

func startWorker(ctx context.Context, exe string, spec handoffSpec) (*workerProc, error) {
	js, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(os.Environ(), envWorker+"="+string(js))
	p := &workerProc{cmd: cmd, lines: make(chan string, 4), stderr: &lockedBuffer{}}
	cmd.Stderr = p.stderr
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	return p, nil
}

func (p *workerProc) next(timeout time.Duration) (string, error) {
	select {
	case l, ok := <-p.lines:
		if !ok {
			return "", fmt.Errorf("exited early: %s", strings.TrimSpace(p.stderr.String()))
		}
		return l, nil
	case <-time.After(timeout):
		return "", fmt.Errorf("no answer in %s: %s", timeout, strings.TrimSpace(p.stderr.String()))
	}
}

func (p *workerProc) waitReady(timeout time.Duration) error {
	l, err := p.next(timeout)
	if err == nil && l != "ready" {
		err = fmt.Errorf("said %q instead of ready", l)
	}
	return err
}

func (p *workerProc) result(timeout time.Duration) (workerOut, error) {
	var o workerOut
	l, err := p.next(timeout)
	if err != nil {
		return o, err
	}
	if err := json.Unmarshal([]byte(l), &o); err != nil {
		return o, fmt.Errorf("result: %w", err)
	}
	_ = p.stdin.Close()
	return o, p.cmd.Wait()
}

// kill ends a worker that is still running (after an error).
func (p *workerProc) kill() {
	if p.cmd.ProcessState == nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
	}
}

// lockedBuffer collects a worker's stderr.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
