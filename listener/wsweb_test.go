package listener

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"xmppbouncer/internal/testclient"
)

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := httpsClient().Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// XEP-0156: host-meta (XRD and JSON) on the same listener names the
// WebSocket URL, as the client reached it or as configured.
func TestWSHostMeta(t *testing.T) {
	srv := startServer(t, wsConfig(t), newRecorder())
	base := "https://" + srv.WebSocketAddr().String()
	want := "wss://" + srv.WebSocketAddr().String() + "/xmpp-websocket"
	resp, body := get(t, base+"/.well-known/host-meta")
	if resp.StatusCode != 200 || !strings.Contains(body, `<Link rel="urn:xmpp:alt-connections:websocket" href="`+want+`">`) ||
		!strings.Contains(body, `xmlns="http://docs.oasis-open.org/ns/xri/xrd-1.0"`) || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/xrd+xml") {
		t.Fatalf("host-meta: %d %s %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	resp, body = get(t, base+"/.well-known/host-meta.json")
	var doc struct {
		Links []struct{ Rel, Href string } `json:"links"`
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil || resp.StatusCode != 200 || len(doc.Links) != 1 ||
		doc.Links[0].Rel != "urn:xmpp:alt-connections:websocket" || doc.Links[0].Href != want {
		t.Fatalf("host-meta.json: %d %q", resp.StatusCode, body)
	}
	cfg := wsConfig(t)
	cfg.WebSocketURL = "wss://chat.example.org/xmpp/xmpp-websocket"
	srv2 := startServer(t, cfg, newRecorder())
	_, body = get(t, "https://"+srv2.WebSocketAddr().String()+"/.well-known/host-meta.json")
	if !strings.Contains(body, cfg.WebSocketURL) {
		t.Fatalf("configured URL not advertised: %q", body)
	}
	_, body = get(t, "https://"+srv2.WebSocketAddr().String()+"/xmppbouncer.json")
	if !strings.Contains(body, `"jid":"alice@bouncer.test"`) || !strings.Contains(body, cfg.WebSocketURL) {
		t.Fatalf("web client config: %q", body)
	}
}

// The web root: files are served with the security headers; directories
// without an index, dotfiles and symlinks out of the root are not.
func TestWSWebRootHygiene(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(root, "index.html"), []byte("<!doctype html><title>client</title>"), 0o644))
	must(os.MkdirAll(filepath.Join(root, "dist"), 0o755))
	must(os.WriteFile(filepath.Join(root, "dist", "app.js"), []byte("console.log(1)"), 0o644))
	must(os.WriteFile(filepath.Join(root, ".env"), []byte("SECRET=1"), 0o644))
	must(os.WriteFile(filepath.Join(outside, "passwd"), []byte("root:x:0:0"), 0o644))
	must(os.Symlink(filepath.Join(outside, "passwd"), filepath.Join(root, "escape")))
	cfg := wsConfig(t)
	cfg.WebRoot = root
	srv := startServer(t, cfg, newRecorder())
	host := srv.WebSocketAddr().String()
	base := "https://" + host

	resp, body := get(t, base+"/")
	if resp.StatusCode != 200 || !strings.Contains(body, "<title>client</title>") {
		t.Fatalf("index: %d %q", resp.StatusCode, body)
	}
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "connect-src 'self' wss://"+host) || !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Fatalf("CSP %q", csp)
	}
	if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatal("no nosniff")
	}
	if resp, body := get(t, base+"/dist/app.js"); resp.StatusCode != 200 || body != "console.log(1)" || !strings.Contains(resp.Header.Get("Content-Type"), "javascript") {
		t.Fatalf("file: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	for _, p := range []string{"/dist/", "/dist", "/.env", "/escape", "/../" + filepath.Base(outside) + "/passwd"} {
		if resp, body := get(t, base+p); resp.StatusCode == 200 || strings.Contains(body, "app.js") || strings.Contains(body, "SECRET") || strings.Contains(body, "root:x") {
			t.Errorf("%s: %d %q", p, resp.StatusCode, body)
		}
	}
	// Without a web root, / says how to get one.
	srv2 := startServer(t, wsConfig(t), newRecorder())
	if resp, body := get(t, "https://"+srv2.WebSocketAddr().String()+"/"); resp.StatusCode != 404 || !strings.Contains(body, "[web] root") {
		t.Fatalf("no root: %d %q", resp.StatusCode, body)
	}
}

// An upgrade request with oversized headers is refused, and one whose
// headers never finish is cut off.
func TestWSRequestLimits(t *testing.T) {
	old := httpHeaderTimeout
	httpHeaderTimeout = 500 * time.Millisecond
	defer func() { httpHeaderTimeout = old }()
	rec := newRecorder()
	srv := startServer(t, wsConfig(t), rec)
	addr := srv.WebSocketAddr().String()

	req, _ := http.NewRequest("GET", "https://"+addr+WebSocketPath, nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	req.Header.Set("Sec-WebSocket-Protocol", "xmpp")
	req.Header.Set("X-Padding", strings.Repeat("a", 16<<10))
	resp, err := httpsClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("16 KiB of headers: %d", resp.StatusCode)
	}

	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = io.WriteString(conn, "GET "+WebSocketPath+" HTTP/1.1\r\nHost: x\r\n")
	start := time.Now()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = bufio.NewReader(conn).ReadString('\n')
	if err == nil || time.Since(start) > 3*time.Second {
		t.Fatalf("a request whose headers never end: %v after %v", err, time.Since(start))
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the server never closed the slow request")
	}
}

// Plain ws (allowed on loopback by configuration) runs the same login; the
// session counts as secure as wss does, so SASL is offered.
func TestWSPlainLoopback(t *testing.T) {
	cfg := wsConfig(t)
	cfg.WebSocketPlain = true
	rec := newRecorder()
	srv := startServer(t, cfg, rec)
	o := wsOpts(srv, "plain")
	o.URL = "ws://" + srv.WebSocketAddr().String() + WebSocketPath
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, err := testclient.TryDialWS(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Drop()
	if c := rec.waitBound(t); c.TLS != "none (WebSocket, loopback)" {
		t.Fatalf("TLS %q", c.TLS)
	}
}

// TCP connections that never send a request are capped per address on the
// HTTP listener; the rest of the listener keeps serving.
func TestWSConnectionsPerAddressCapped(t *testing.T) {
	cfg := wsConfig(t)
	cfg.MaxConnectionsPerAddress = 2
	srv := startServer(t, cfg, newRecorder())
	addr := srv.WebSocketAddr().String()
	limit := httpConnsPerAddress(cfg.MaxConnectionsPerAddress)
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for range limit {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	time.Sleep(100 * time.Millisecond) // let the server accept them all
	extra, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	_ = extra.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := extra.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection %d over the cap was not closed: %v", limit+1, err)
	}
	// Freeing one lets the next one in, and it is served.
	held[0].Close()
	held = held[1:]
	time.Sleep(100 * time.Millisecond)
	if resp, _ := get(t, "https://"+addr+"/.well-known/host-meta"); resp.StatusCode != 200 {
		t.Fatalf("after one left: %d", resp.StatusCode)
	}
}
