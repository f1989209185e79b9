package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"xmppbouncer/internal/testserver"
)

// -idle N: the bouncer's memory per idle client, c2s against WebSocket.
// The bouncer runs in this process; the clients run in a child process
// (this binary again, -idle-child), so only the server's side is counted:
// Go heap in use plus goroutine stacks, after a GC, with N clients bound
// (no presence, no rooms) minus without them.

type idleStats struct {
	Transport         string  `json:"transport"`
	Clients           int     `json:"clients"`
	HeapPerClient     float64 `json:"heap_bytes_per_client"`
	StackPerClient    float64 `json:"stack_bytes_per_client"`
	TotalPerClient    float64 `json:"bytes_per_client"`
	GoroutinesPerConn float64 `json:"goroutines_per_client"`
}

type idleResult struct {
	Results []idleStats `json:"idle"`
}

func (r *idleResult) print(w io.Writer) {
	fmt.Fprintln(w, "bouncer memory per idle client (bound, no presence, no rooms; heap in use + stacks after GC, clients in another process):")
	for _, s := range r.Results {
		fmt.Fprintf(w, "  %-9s %4d clients: %6.1f KiB/client (heap %.1f KiB, stacks %.1f KiB), %.1f goroutines/client\n",
			s.Transport, s.Clients, s.TotalPerClient/1024, s.HeapPerClient/1024, s.StackPerClient/1024, s.GoroutinesPerConn)
	}
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return pprof.Lookup("heap").WriteTo(f, 0)
}

type memSnap struct {
	heap, stack uint64
	goroutines  int
}

func snapshot() memSnap {
	var ms runtime.MemStats
	for range 3 {
		runtime.GC()
		time.Sleep(50 * time.Millisecond)
	}
	runtime.ReadMemStats(&ms)
	return memSnap{heap: ms.HeapInuse, stack: ms.StackInuse, goroutines: runtime.NumGoroutine()}
}

func measureIdle(ctx context.Context, o options, stderr io.Writer) (*idleResult, error) {
	progress := func(format string, a ...any) { fmt.Fprintf(stderr, "xbload: "+format+"\n", a...) }
	srv, stopProsody, err := testserver.StartProcess(testserver.Options{LogLevel: o.prosodyLog})
	if err != nil {
		return nil, err
	}
	defer stopProsody()
	listen, wsURL, stopBouncer, err := startBouncer(ctx, o, srv, srv.Addr, stderr)
	if err != nil {
		return nil, err
	}
	defer stopBouncer()
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	res := &idleResult{}
	for _, kind := range []string{"c2s", "websocket"} {
		addr := listen
		if kind == "websocket" {
			addr = wsURL
		}
		time.Sleep(time.Second) // let the previous round's connections end
		before := snapshot()
		cmd := exec.CommandContext(ctx, self, "-idle-child", strings.Join([]string{kind, addr, strconv.Itoa(o.idle), srv.JID(testserver.Alice), localPassword}, "|"))
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return nil, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		cmd.Stderr = stderr
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil || strings.TrimSpace(line) != "READY" {
			stdin.Close()
			_ = cmd.Wait()
			return nil, fmt.Errorf("idle clients (%s) did not log in: %q %v", kind, line, err)
		}
		time.Sleep(time.Second)
		after := snapshot()
		if o.memProfile != "" {
			if err := writeHeapProfile(o.memProfile + "." + kind); err != nil {
				return nil, err
			}
		}
		stdin.Close() // the child closes its clients and exits
		if err := cmd.Wait(); err != nil {
			return nil, fmt.Errorf("idle clients (%s): %w", kind, err)
		}
		n := float64(o.idle)
		st := idleStats{
			Transport:         kind,
			Clients:           o.idle,
			HeapPerClient:     (float64(after.heap) - float64(before.heap)) / n,
			StackPerClient:    (float64(after.stack) - float64(before.stack)) / n,
			GoroutinesPerConn: float64(after.goroutines-before.goroutines) / n,
		}
		st.TotalPerClient = st.HeapPerClient + st.StackPerClient
		progress("%s: %d idle clients: %.0f B/client", kind, o.idle, st.TotalPerClient)
		res.Results = append(res.Results, st)
	}
	return res, nil
}

// idleChild logs in the idle clients described by spec
// ("kind|addr|n|account|password"), says READY, and waits for its stdin to
// close.
func idleChild(ctx context.Context, spec string, stderr io.Writer) int {
	parts := strings.Split(spec, "|")
	if len(parts) != 5 {
		fmt.Fprintln(stderr, "xbload: bad -idle-child")
		return 2
	}
	kind, addr, account, password := parts[0], parts[1], parts[3], parts[4]
	n, _ := strconv.Atoi(parts[2])
	var sessions []*session
	for i := range n {
		o := dialOpts{addr: addr, account: account, password: password, resource: fmt.Sprintf("idle-%s-%d", kind, i), queue: 16}
		var s *session
		var err error
		if kind == "websocket" {
			s, err = dialWS(ctx, addr, o, o.resource, "")
		} else {
			s, err = dial(ctx, o, o.resource, "")
		}
		if err != nil {
			fmt.Fprintln(stderr, "xbload:", err)
			return 1
		}
		sessions = append(sessions, s)
	}
	fmt.Println("READY")
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, s := range sessions {
		s.close()
	}
	return 0
}
