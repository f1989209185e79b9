// Package testserver runs a real, throwaway Prosody (the Debian 0.12
// package) for integration tests: its own config, data, certificate, log
// and loopback ports in a temporary directory, so the system instance is
// never touched.
//
// Accounts alice/alicepw, bob/bobpw and carol/carolpw exist on every
// server. They are registered with prosodyctl once per test binary into a
// template data directory, which each server then copies, so a server
// starts in a fraction of a second.
package testserver

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Test accounts present on every server (password = name + "pw").
const (
	Alice = "alice"
	Bob   = "bob"
	Carol = "carol"
)

const startTimeout = 15 * time.Second

// Server is one Prosody instance.
type Server struct {
	Domain        string // the virtual host, "localhost"
	MUC           string // the MUC component, "conference.localhost"
	Addr          string // 127.0.0.1:port for c2s with STARTTLS
	DirectTLSAddr string // 127.0.0.1:port for c2s with direct TLS (XEP-0368)
	Dir           string // the temporary directory holding everything
	CAFile        string // PEM of the server's self-signed certificate, usable as RootCAs
	LogFile       string // Prosody's debug log

	opts Options

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
}

// Start starts a fresh server and registers a t.Cleanup that stops it (and
// prints the tail of its log if the test failed). It fails the test if
// Prosody is not installed or does not come up.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartWith(t, Options{})
}

// StartWith is Start with non-default options.
func StartWith(t testing.TB, o Options) *Server {
	t.Helper()
	s, err := startIn(t.TempDir(), o)
	if s != nil {
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("testserver: tail of %s:\n%s", s.LogFile, s.logTail(80))
			}
			// The data dies with the test: no need for a clean shutdown.
			s.shutdown(syscall.SIGKILL)
		})
	}
	if err != nil {
		t.Fatalf("%v", err)
	}
	return s
}

// StartProcess starts a fresh server outside a test, in a new temporary
// directory, for tools such as cmd/xbload. stop kills the server and
// removes the directory; it is safe to call more than once. The error says
// how to install Prosody when it is missing.
func StartProcess(o Options) (s *Server, stop func(), err error) {
	dir, err := os.MkdirTemp("", "xb-prosody-")
	if err != nil {
		return nil, nil, fmt.Errorf("testserver: %w", err)
	}
	s, err = startIn(dir, o)
	var once sync.Once
	stop = func() {
		once.Do(func() {
			if s != nil {
				_ = s.shutdown(syscall.SIGKILL)
			}
			_ = os.RemoveAll(dir)
		})
	}
	if err != nil {
		stop()
		return nil, nil, err
	}
	return s, stop, nil
}

// LogTail returns the last n lines of Prosody's log.
func (s *Server) LogTail(n int) string { return s.logTail(n) }

// startIn starts a server rooted at dir. On error the returned server, if
// not nil, may need a shutdown.
func startIn(dir string, o Options) (*Server, error) {
	tpl, err := loadTemplate()
	if err != nil {
		return nil, fmt.Errorf("testserver: %w", err)
	}
	s := &Server{
		Domain:  "localhost",
		MUC:     "conference.localhost",
		Dir:     dir,
		CAFile:  filepath.Join(dir, "ca.pem"),
		LogFile: filepath.Join(dir, "prosody.log"),
		opts:    o,
	}
	if err := tpl.install(dir); err != nil {
		return nil, fmt.Errorf("testserver: %w", err)
	}
	// A port picked free can be taken again before Prosody binds it; then
	// pick new ones.
	for attempt := 1; ; attempt++ {
		if s.Addr, err = freeAddr(); err != nil {
			return s, err
		}
		if s.DirectTLSAddr, err = freeAddr(); err != nil {
			return s, err
		}
		if err := os.WriteFile(s.path("prosody.cfg.lua"), []byte(s.config()), 0o600); err != nil {
			return s, fmt.Errorf("testserver: %w", err)
		}
		err := s.launch()
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, errPortBusy) || attempt == 5 {
			return s, fmt.Errorf("testserver: %v\n%s", err, s.logTail(40))
		}
	}
}

// Start starts the server again after Stop or Kill, on the same ports and
// with the same data.
func (s *Server) Start(t testing.TB) {
	t.Helper()
	if err := s.launch(); err != nil {
		t.Fatalf("testserver: restart: %v\n%s", err, s.logTail(40))
	}
}

// Stop ends the server with SIGTERM and waits for it to exit; persistent
// rooms are saved on the way out.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if err := s.shutdown(syscall.SIGTERM); err != nil {
		t.Fatalf("testserver: stop: %v", err)
	}
}

// Kill ends the server with SIGKILL, as a crash would, and waits for it.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	if err := s.shutdown(syscall.SIGKILL); err != nil {
		t.Fatalf("testserver: kill: %v", err)
	}
}

// Freeze stops the server process (SIGSTOP) without closing its sockets:
// connections stay open but nothing is answered, as with a hung server or
// a dead network path. Thaw resumes it.
func (s *Server) Freeze(t testing.TB) {
	t.Helper()
	s.signal(t, syscall.SIGSTOP)
}

// Thaw resumes a frozen server (SIGCONT).
func (s *Server) Thaw(t testing.TB) {
	t.Helper()
	s.signal(t, syscall.SIGCONT)
}

func (s *Server) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		t.Fatalf("testserver: %v: the server is not running", sig)
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("testserver: %v: %v", sig, err)
	}
}

// Register creates an account (or changes its password) with prosodyctl.
// It works whether or not the server is running: Prosody's internal
// storage reads account files on each login.
func (s *Server) Register(t testing.TB, user, password string) {
	t.Helper()
	if err := prosodyctl(s.path("prosody.cfg.lua"), "register", user, s.Domain, password); err != nil {
		t.Fatalf("testserver: %v", err)
	}
}

// JID returns user@Domain.
func (s *Server) JID(user string) string { return user + "@" + s.Domain }

// Password returns the password of the test accounts Alice, Bob and Carol.
func Password(user string) string { return user + "pw" }

func (s *Server) path(name string) string { return filepath.Join(s.Dir, name) }

var errPortBusy = errors.New("a listening port was already taken")

// launch starts Prosody and waits until it listens on both ports.
func (s *Server) launch() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("already running")
	}
	logStart := int64(0)
	if st, err := os.Stat(s.LogFile); err == nil {
		logStart = st.Size()
	}
	out, err := os.OpenFile(s.path("prosody.stdout"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := exec.Command(prosodyBin, "--config", s.path("prosody.cfg.lua"), "-F")
	cmd.Dir = s.Dir
	cmd.Stdout, cmd.Stderr = out, out
	// Pdeathsig: a test binary that dies must not leave Prosody behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", prosodyBin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.cmd, s.exited = cmd, exited

	fail := func(err error) error {
		_ = cmd.Process.Kill()
		<-exited
		s.cmd, s.exited = nil, nil
		return err
	}
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-exited:
			stdout, _ := os.ReadFile(s.path("prosody.stdout"))
			return fail(fmt.Errorf("prosody exited during startup (%v); its output:\n%s", cmd.ProcessState, stdout))
		default:
		}
		logText := s.logSince(logStart)
		if strings.Contains(logText, "Failed to open server port") {
			return fail(errPortBusy)
		}
		if accepts(s.DirectTLSAddr) && greets(s.Addr, s.Domain) {
			return nil
		}
		if time.Now().After(deadline) {
			return fail(fmt.Errorf("prosody did not listen on %s and %s within %v", s.Addr, s.DirectTLSAddr, startTimeout))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// shutdown signals the running server and waits for it; SIGTERM escalates
// to SIGKILL after 10 s. It is a no-op when the server is not running.
func (s *Server) shutdown(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil
	}
	cmd, exited := s.cmd, s.exited
	s.cmd, s.exited = nil, nil
	logStart := int64(0)
	if st, err := os.Stat(s.LogFile); err == nil {
		logStart = st.Size()
	}
	_ = cmd.Process.Signal(sig)
	_ = cmd.Process.Signal(syscall.SIGCONT) // a frozen server must see it
	// Prosody logs "Shutdown complete" once every module has saved its
	// state; its event loop then idles up to a second before exiting, which
	// is not worth waiting for.
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-exited:
			return nil
		case <-time.After(5 * time.Millisecond):
		}
		if strings.Contains(s.logSince(logStart), "Shutdown complete") {
			_ = cmd.Process.Kill()
			<-exited
			return nil
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("prosody ignored %v for 10 s and was killed", sig)
		}
	}
}

func accepts(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// greets reports whether a stream opened to addr gets its stream features.
// Prosody only runs its event loop once every host and component has
// loaded, so an answer means the whole server is ready.
func greets(addr, domain string) bool {
	c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := fmt.Fprintf(c, "<?xml version='1.0'?><stream:stream to='%s' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>", domain); err != nil {
		return false
	}
	var got []byte
	buf := make([]byte, 2048)
	for !bytes.Contains(got, []byte("features")) {
		n, err := c.Read(buf)
		if err != nil {
			return false
		}
		got = append(got, buf[:n]...)
	}
	_, _ = c.Write([]byte("</stream:stream>"))
	return true
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("testserver: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func (s *Server) logSince(off int64) string {
	b, err := os.ReadFile(s.LogFile)
	if err != nil || int64(len(b)) < off {
		return ""
	}
	return string(b[off:])
}

func (s *Server) logTail(n int) string {
	b, err := os.ReadFile(s.LogFile)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
