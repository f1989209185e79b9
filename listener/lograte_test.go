package listener

import (
	"bytes"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

type lockedLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) lines(substr string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range strings.Split(l.b.String(), "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return out
}

// TestRefusedConnectionsLogRateLimited: a flood of refused connections is
// one log line per reason, then one line per window saying how many were
// suppressed, instead of a line each; another reason is still logged at
// once. Every refused client still gets its stream error.
func TestRefusedConnectionsLogRateLimited(t *testing.T) {
	var lb lockedLog
	cfg := testConfig(t)
	cfg.Logger = slog.New(slog.NewTextHandler(&lb, nil))
	cfg.MaxConnections = 3
	cfg.MaxConnectionsPerAddress = 1
	srv := startServer(t, cfg, newRecorder())
	srv.refusedLog.mu.Lock()
	srv.refusedLog.every = 500 * time.Millisecond
	srv.refusedLog.mu.Unlock()
	addr := srv.Addr().String()

	idle := dialRawFrom(t, "127.0.0.1", addr)
	idle.send(t, header(testDomain))
	idle.mustNext(t)
	const flood = 60
	for range flood {
		r := dialRawFrom(t, "127.0.0.1", addr)
		if cond := r.streamErrorCond(t); cond != "policy-violation" {
			t.Fatalf("refused connection got %q", cond)
		}
		r.Close() // frees the server's rejecting slot at once
	}
	if got := lb.lines("connection refused"); len(got) != 1 {
		t.Fatalf("%d refused connections logged %d lines within the window, want 1:\n%s", flood, len(got), strings.Join(got, "\n"))
	}
	// A second reason, within the first one's window: logged at once.
	for _, ip := range []string{"127.0.0.2", "127.0.0.3"} {
		r := dialRawFrom(t, ip, addr)
		r.send(t, header(testDomain))
		r.mustNext(t)
	}
	if cond := dialRawFrom(t, "127.0.0.4", addr).streamErrorCond(t); cond != "policy-violation" {
		t.Fatalf("connection over the total got %q", cond)
	}
	if got := lb.lines("too many connections (at most 3)"); len(got) != 1 {
		t.Fatalf("the second reason was not logged at once: %q", got)
	}
	// The window ends: one line with the count.
	re := regexp.MustCompile(`connection refused" reason="too many connections from your address \(at most 1\)" suppressed=(\d+)`)
	deadline := time.Now().Add(3 * time.Second)
	for {
		var n []string
		for _, l := range lb.lines("suppressed=") {
			if m := re.FindStringSubmatch(l); m != nil {
				n = append(n, m[1])
			}
		}
		if len(n) == 1 && n[0] == "59" {
			break
		}
		if len(n) > 0 || time.Now().After(deadline) {
			t.Fatalf("suppressed counts %v, want one line with 59:\n%s", n, strings.Join(lb.lines("refused"), "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A quiet window later, the next refusal is logged at once again.
	time.Sleep(1200 * time.Millisecond)
	dialRawFrom(t, "127.0.0.1", addr).streamErrorCond(t)
	if got := lb.lines("connection refused"); len(got) != 4 {
		t.Fatalf("after a quiet window: %d lines, want 4:\n%s", len(got), strings.Join(got, "\n"))
	}
}
