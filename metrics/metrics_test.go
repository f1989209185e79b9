package metrics

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"xmppbouncer/bouncer"
	"xmppbouncer/config"
	"xmppbouncer/internal/testclient"
	"xmppbouncer/internal/testserver"
	"xmppbouncer/listener"
	"xmppbouncer/sqlite"
	"xmppbouncer/stanza"
	"xmppbouncer/upstream"
)

// stack is a bouncer in front of a real Prosody with the metrics endpoint.
type stack struct {
	srv  *testserver.Server
	cfg  *config.Config
	b    *bouncer.Bouncer
	up   *upstream.Client
	lsrv *listener.Server
	url  string
}

func start(t *testing.T) *stack {
	t.Helper()
	srv := testserver.Start(t)
	cfg := &config.Config{}
	cfg.Upstream = config.Upstream{JID: srv.JID("alice"), Password: "alicepw", Address: srv.Addr, TLS: "starttls", CAFile: srv.CAFile, Resource: "bouncer"}
	cfg.Listen = config.Listen{Address: "127.0.0.1:0"}
	cfg.Auth.Password = "local"
	cfg.Storage.Path = filepath.Join(t.TempDir(), "bouncer.db")
	cfg.Metrics.Address = "127.0.0.1:0"
	cfg.Defaults()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	db, err := sqlite.Open(ctx, cfg.Storage.Path)
	if err != nil {
		t.Fatal(err)
	}
	account, _ := jid.Parse(cfg.Upstream.JID)
	b := bouncer.New(bouncer.Options{Account: account, Config: cfg, Logger: log, Archive: db, Version: "test"})
	ucfg, err := upstream.ConfigFrom(&cfg.Upstream)
	if err != nil {
		t.Fatal(err)
	}
	ucfg.Logger = log
	up := upstream.New(ucfg, b.UpstreamHandler())
	b.SetUpstream(up)
	lcfg, err := listener.ConfigFrom(cfg, filepath.Dir(cfg.Storage.Path), log)
	if err != nil {
		t.Fatal(err)
	}
	lsrv, err := listener.New(lcfg, b.ClientHandler())
	if err != nil {
		t.Fatal(err)
	}
	if err := lsrv.Listen(); err != nil {
		t.Fatal(err)
	}
	m := New(Sources{Bouncer: b, Upstream: up, Archive: db, Listener: lsrv, Version: "test"})
	ln, err := Listen(cfg.Metrics.Address)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 3)
	go func() { b.Run(ctx); done <- struct{}{} }()
	go func() { up.Run(ctx); done <- struct{}{} }()
	go func() { _ = lsrv.Serve(ctx); done <- struct{}{} }()
	go func() { _ = m.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		for range 3 {
			select {
			case <-done:
			case <-time.After(5 * time.Second):
			}
		}
		db.Close()
	})
	return &stack{srv: srv, cfg: cfg, b: b, up: up, lsrv: lsrv, url: "http://" + ln.Addr().String() + "/metrics"}
}

// scrape fetches the endpoint and returns its samples by series (name and
// labels, as written).
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, body)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad sample line %q", line)
		}
		out[line[:i]] = v
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestEndpointServesSeriesThatMove(t *testing.T) {
	s := start(t)
	waitFor(t, "upstream online", func() bool { return s.up.Status().Connected })
	c := testclient.Dial(t, testclient.Options{Addr: s.lsrv.Addr().String(), JID: s.cfg.Upstream.JID, Password: "local", Resource: "phone", InsecureSkipVerify: true})
	c.Send(t, `<presence/>`)
	c.Send(t, `<inactive xmlns="urn:xmpp:csi:0"/>`)
	// A failed login, for the auth failure counter.
	if _, err := testclient.TryDial(context.Background(), testclient.Options{Addr: s.lsrv.Addr().String(), JID: s.cfg.Upstream.JID, Password: "wrong", Resource: "x", InsecureSkipVerify: true}); err == nil {
		t.Fatal("a wrong password logged in")
	}
	before := scrape(t, s.url)

	for _, name := range []string{
		`xmppbouncer_upstream_connected`,
		`xmppbouncer_upstream_reconnects_total`,
		`xmppbouncer_upstream_received_bytes_total`,
		`xmppbouncer_upstream_sent_bytes_total`,
		`xmppbouncer_clients{csi="inactive",sm="live"}`,
		`xmppbouncer_clients{csi="active",sm="hibernated"}`,
		`xmppbouncer_rooms{state="claimed"}`,
		`xmppbouncer_rooms{state="kept"}`,
		`xmppbouncer_rooms{state="joined"}`,
		`xmppbouncer_stanzas_total{direction="from_upstream",kind="message"}`,
		`xmppbouncer_stanzas_total{direction="to_clients",kind="message"}`,
		`xmppbouncer_archive_messages`,
		`xmppbouncer_archive_bytes`,
		`xmppbouncer_archive_inserts_total`,
		`xmppbouncer_archive_commit_seconds_count`,
		`xmppbouncer_loop_event_seconds_count`,
		`xmppbouncer_loop_queue_depth`,
		`xmppbouncer_loop_responsive`,
		`xmppbouncer_slow_client_disconnects_total`,
		`xmppbouncer_auth_failures_total`,
		`xmppbouncer_offline_store_messages`,
		`xmppbouncer_upstream_outbox_messages`,
	} {
		if _, ok := before[name]; !ok {
			t.Errorf("series %s missing", name)
		}
	}
	for name := range before {
		if !strings.HasPrefix(name, "xmppbouncer_") {
			t.Errorf("series %s is not named xmppbouncer_…", name)
		}
	}
	if before[`xmppbouncer_upstream_connected`] != 1 || before[`xmppbouncer_clients{csi="inactive",sm="live"}`] != 1 ||
		before[`xmppbouncer_auth_failures_total`] < 1 || before[`xmppbouncer_loop_responsive`] != 1 {
		t.Errorf("gauges do not match the state: %v", before)
	}
	var build string
	for k := range before {
		if strings.HasPrefix(k, "xmppbouncer_build_info{") {
			build = k
		}
	}
	if !regexp.MustCompile(`sqlite="3\.\d+\.\d+"`).MatchString(build) {
		t.Errorf("build_info %q lacks the SQLite version", build)
	}

	// A chat message from bob, and a room message that is archived.
	room := "metrics@" + s.srv.MUC
	bob := testclient.Dial(t, testclient.Options{Addr: s.srv.Addr, JID: s.srv.JID("bob"), Password: "bobpw", Resource: "desk", InsecureSkipVerify: true})
	bob.Send(t, `<presence/>`)
	bob.Send(t, fmt.Sprintf(`<presence to="%s/bob"><x xmlns="http://jabber.org/protocol/muc"/></presence>`, room))
	bob.Expect(t, "bob's self-presence", func(el *stanza.Element) bool { return el.Kind() == "presence" && el.From() == room+"/bob" })
	c.Send(t, fmt.Sprintf(`<presence to="%s/alice"><x xmlns="http://jabber.org/protocol/muc"/></presence>`, room))
	c.Expect(t, "the room's subject", func(el *stanza.Element) bool {
		return el.Kind() == "message" && el.From() == room && el.Child(stanza.NSClient, "subject") != nil
	})
	bob.Send(t, `<message type="chat" to="`+s.cfg.Upstream.JID+`"><body>hello alice</body></message>`)
	c.Expect(t, "bob's chat", testclient.IsMessage("hello alice"))
	bob.Send(t, `<message type="groupchat" to="`+room+`"><body>hello room</body></message>`)
	c.Expect(t, "bob's room message", testclient.IsMessage("hello room"))

	after := scrape(t, s.url)
	for _, name := range []string{
		`xmppbouncer_stanzas_total{direction="from_upstream",kind="message"}`,
		`xmppbouncer_stanzas_total{direction="to_clients",kind="message"}`,
		`xmppbouncer_stanzas_total{direction="from_clients",kind="presence"}`,
		`xmppbouncer_stanzas_total{direction="to_upstream",kind="presence"}`,
		`xmppbouncer_upstream_received_bytes_total`,
		`xmppbouncer_upstream_sent_bytes_total`,
		`xmppbouncer_archive_messages`,
		`xmppbouncer_archive_inserts_total`,
		`xmppbouncer_archive_commit_seconds_count`,
		`xmppbouncer_loop_event_seconds_count`,
		`xmppbouncer_rooms{state="claimed"}`,
		`xmppbouncer_rooms{state="joined"}`,
	} {
		if after[name] <= before[name] {
			t.Errorf("%s did not grow: %v → %v", name, before[name], after[name])
		}
	}
}

func TestNonMetricsPathIs404(t *testing.T) {
	s := start(t)
	resp, err := http.Get(strings.TrimSuffix(s.url, "metrics") + "other")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

// TestToClientsCountsEveryStanza: to_clients counts each stanza that
// reaches a client, whichever path brought it: one room message (the
// archive's forwarding) and one chat make exactly 2.
func TestToClientsCountsEveryStanza(t *testing.T) {
	s := start(t)
	waitFor(t, "upstream online", func() bool { return s.up.Status().Connected })
	c := testclient.Dial(t, testclient.Options{Addr: s.lsrv.Addr().String(), JID: s.cfg.Upstream.JID, Password: "local", Resource: "phone", InsecureSkipVerify: true})
	c.Send(t, `<presence/>`)
	room := "count@" + s.srv.MUC
	bob := testclient.Dial(t, testclient.Options{Addr: s.srv.Addr, JID: s.srv.JID("bob"), Password: "bobpw", Resource: "desk", InsecureSkipVerify: true})
	bob.Send(t, `<presence/>`)
	bob.Send(t, fmt.Sprintf(`<presence to="%s/bob"><x xmlns="http://jabber.org/protocol/muc"/></presence>`, room))
	bob.Expect(t, "bob's self-presence", func(el *stanza.Element) bool { return el.Kind() == "presence" && el.From() == room+"/bob" })
	c.Send(t, fmt.Sprintf(`<presence to="%s/alice"><x xmlns="http://jabber.org/protocol/muc"/></presence>`, room))
	c.Expect(t, "the room's subject", func(el *stanza.Element) bool {
		return el.Kind() == "message" && el.From() == room && el.Child(stanza.NSClient, "subject") != nil
	})
	const series = `xmppbouncer_stanzas_total{direction="to_clients",kind="message"}`
	before := scrape(t, s.url)[series]
	bob.Send(t, `<message type="groupchat" to="`+room+`"><body>hello room</body></message>`)
	c.Expect(t, "bob's room message", testclient.IsMessage("hello room"))
	bob.Send(t, `<message type="chat" to="`+s.cfg.Upstream.JID+`"><body>hello alice</body></message>`)
	c.Expect(t, "bob's chat", testclient.IsMessage("hello alice"))
	if got := scrape(t, s.url)[series] - before; got != 2 {
		t.Errorf("%s grew by %v for 1 groupchat and 1 chat, want 2", series, got)
	}
}
