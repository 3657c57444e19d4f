package framework

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"
	"time"
)

// Program is a testing.TB for programs outside go test, such as the
// benchmarks under tests/bench, so that they drive clusters with the same
// harness as the tests. Log goes to a writer with a timestamp; Fatal marks
// it failed and ends Run (call it only from Run's goroutine, as testing
// requires of a test's); TempDir and Cleanup behave as in a test, with
// cleanups run when Run returns. The testing.TB methods the harness does not
// use (Skip, Setenv, Chdir, ...) are not provided and panic.
type Program struct {
	testing.TB // nil; only satisfies testing.TB's unexported method

	name   string
	out    io.Writer
	tmpDir string // parent of TempDir's dirs; "" is os.TempDir()

	mu       sync.Mutex
	failed   bool
	cleanups []func()
	ctx      context.Context
	cancel   context.CancelFunc
}

var _ testing.TB = (*Program)(nil)

// programFatal is the panic value with which Fatal ends Run.
type programFatal struct{}

// NewProgram returns a Program named name that logs to out and makes its
// temporary directories under tmpDir ("" for os.TempDir()).
func NewProgram(name string, out io.Writer, tmpDir string) *Program {
	return &Program{name: name, out: out, tmpDir: tmpDir}
}

// Run calls fn with p, then runs the cleanups fn registered, last first. It
// returns an error if fn called Fatal or Error. A Program runs once.
func (p *Program) Run(fn func(t testing.TB)) (err error) {
	p.mu.Lock()
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.mu.Unlock()
	defer func() {
		r := recover()
		if _, ok := r.(programFatal); r != nil && !ok {
			panic(r)
		}
		p.cancel()
		p.runCleanups()
		if p.Failed() {
			err = fmt.Errorf("%s failed (see its log)", p.name)
		}
	}()
	fn(p)
	return nil
}

func (p *Program) runCleanups() {
	for {
		p.mu.Lock()
		n := len(p.cleanups)
		if n == 0 {
			p.mu.Unlock()
			return
		}
		f := p.cleanups[n-1]
		p.cleanups = p.cleanups[:n-1]
		p.mu.Unlock()
		f()
	}
}

func (p *Program) Name() string { return p.name }
func (p *Program) Helper()      {}

func (p *Program) Log(args ...any) { p.log(fmt.Sprintln(args...)) }

func (p *Program) Logf(format string, args ...any) { p.log(fmt.Sprintf(format, args...)) }

func (p *Program) log(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(s) == 0 || s[len(s)-1] != '\n' {
		s += "\n"
	}
	fmt.Fprintf(p.out, "%s %s: %s", time.Now().Format("15:04:05.000"), p.name, s)
}

func (p *Program) Fail() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failed = true
}

func (p *Program) Failed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed
}

func (p *Program) FailNow() {
	p.Fail()
	panic(programFatal{})
}

func (p *Program) Error(args ...any) { p.Log(args...); p.Fail() }

func (p *Program) Errorf(format string, args ...any) { p.Logf(format, args...); p.Fail() }

func (p *Program) Fatal(args ...any) { p.Log(args...); p.FailNow() }

func (p *Program) Fatalf(format string, args ...any) { p.Logf(format, args...); p.FailNow() }

func (p *Program) Cleanup(f func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cleanups = append(p.cleanups, f)
}

// Context is canceled just before the cleanups run.
func (p *Program) Context() context.Context {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ctx == nil {
		return context.Background()
	}
	return p.ctx
}

// TempDir returns a new directory, removed when Run returns.
func (p *Program) TempDir() string {
	dir, err := os.MkdirTemp(p.tmpDir, p.name+"-")
	if err != nil {
		p.Fatalf("TempDir: %v", err)
	}
	p.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
