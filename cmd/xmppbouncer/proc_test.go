package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"xmppbouncer/internal/testserver"
)

// The real binary, built once for the tests that run it as a process.
var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func binary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		// XMPPBOUNCER_TEST_BIN runs the tests against another build, e.g.
		// an older one for before/after figures.
		if p := os.Getenv("XMPPBOUNCER_TEST_BIN"); p != "" {
			binPath = p
			return
		}
		binDir, binErr = os.MkdirTemp("", "xmppbouncer-bin-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "xmppbouncer")
		out, err := exec.Command("go", "build", "-tags", "sqlite_fts5", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// proc is one running bouncer process.
type proc struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	errb bytes.Buffer
	done chan struct{}
	code int
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.errb.Write(b)
}

func (p *proc) stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.errb.String()
}

// startBinary runs the bouncer with the config file cfg; the process is
// stopped (SIGTERM, then SIGKILL) when the test ends.
func startBinary(t testing.TB, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(binary(t), args...), done: make(chan struct{})}
	p.cmd.Stderr = p
	p.cmd.Stdout = p
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	t.Cleanup(func() { p.stop(t) })
	return p
}

func (p *proc) stop(t testing.TB) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("the bouncer did not stop on SIGTERM:\n%s", p.stderr())
	}
}

// exited waits up to d for the process to end and returns its exit code.
func (p *proc) exited(t testing.TB, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(d):
		t.Fatalf("the bouncer still runs after %v:\n%s", d, p.stderr())
		return -1
	}
}

// waitLog waits until the process's output contains s.
func (p *proc) waitLog(t testing.TB, s string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(p.stderr(), s) {
		select {
		case <-p.done:
			t.Fatalf("the bouncer exited (%d) before logging %q:\n%s", p.code, s, p.stderr())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q logged within %v:\n%s", s, d, p.stderr())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// prosodyConfig is a config for the bouncer in front of the real Prosody
// srv, its database at dbPath, listening on free loopback ports.
func prosodyConfig(t testing.TB, srv *testserver.Server, dbPath, extra string) string {
	t.Helper()
	return writeConfig(t, fmt.Sprintf(`
[upstream]
jid = %q
password = %q
address = %q
tls = "starttls"
ca_file = %q

[listen]
address = "127.0.0.1:0"

[auth]
password = "local"

[storage]
path = %q
%s`, srv.JID(testserver.Alice), testserver.Password(testserver.Alice), srv.Addr, srv.CAFile, dbPath, extra))
}

// waitDirectTLS waits for the direct TLS listener and returns its address.
func (p *proc) waitDirectTLS(t testing.TB) string {
	t.Helper()
	re := regexp.MustCompile(`accepting clients.* addr=(\S+) direct_tls=true`)
	deadline := time.Now().Add(15 * time.Second)
	for {
		if m := re.FindStringSubmatch(p.stderr()); m != nil {
			return m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no direct TLS listener logged:\n%s", p.stderr())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
