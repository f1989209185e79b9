package bouncer

import (
	"context"
	"crypto/tls"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	goxmpp "github.com/xmppo/go-xmpp"

	"xmppbouncer/internal/testdeps"
)

// go-xmpp, an independent third-party client, logs in through the bouncer,
// chats both ways and joins a room the account is already in.
func TestInteropGoXMPP(t *testing.T) {
	e := newEnv(t, nil, nil)
	room := "interop@" + e.srv.MUC
	bob := e.bobInRoom(room)
	a := e.availableClient("first")
	join(t, a, room, "alice", `<history maxchars="0"/>`)
	bob.Expect(t, "alice joins", presenceFrom(room+"/alice"))

	opts := goxmpp.Options{
		Host: e.lsrv.Addr().String(), User: "alice@localhost", Password: localPassword,
		Resource: "goxmpp", StartTLS: true, NoTLS: true, Session: true,
		TLSConfig: &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"},
	}
	c, err := opts.NewClient()
	if err != nil {
		t.Fatalf("go-xmpp login through the bouncer: %v", err)
	}
	// go-xmpp's Close races with its own Recv; the bouncer's shutdown at
	// the end of the test ends the stream instead.
	got := make(chan any, 100)
	go func() {
		for {
			st, err := c.Recv()
			if err != nil {
				close(got)
				return
			}
			got <- st
		}
	}()
	wait := func(what string, ok func(any) bool) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case st, open := <-got:
				if !open {
					t.Fatalf("go-xmpp stream ended waiting for %s", what)
				}
				if ok(st) {
					return
				}
			case <-deadline:
				t.Fatalf("go-xmpp: timed out waiting for %s", what)
			}
		}
	}
	// go-xmpp logs in with SASL2 and Bind2 when offered: its resource is
	// then its Bind2 tag plus ours, not Options.Resource.
	_, res, _ := strings.Cut(c.JID(), "/")
	if !strings.HasPrefix(res, "go-xmpp.") {
		t.Fatalf("go-xmpp bound %q, want a Bind2 resource", c.JID())
	}
	// Chat to the bare JID goes to available resources: wait for go-xmpp's
	// initial presence to reach the core.
	e.waitFor("go-xmpp available", func() bool {
		var ok bool
		e.b.Do(func() { s := e.b.reg.ByResource(res); ok = s != nil && s.Available() })
		return ok
	})
	bob.Send(t, `<message to="alice@localhost" type="chat" id="gx-1"><body>hi go-xmpp</body></message>`)
	wait("bob's chat", func(st any) bool { m, ok := st.(goxmpp.Chat); return ok && m.Text == "hi go-xmpp" })
	if _, err := c.Send(goxmpp.Chat{Remote: "bob@localhost", Type: "chat", Text: "hi bob from go-xmpp"}); err != nil {
		t.Fatal(err)
	}
	bob.Expect(t, "go-xmpp's chat", hasBody("hi bob from go-xmpp"))

	if _, err := c.JoinMUCNoHistory(room, "alice"); err != nil {
		t.Fatal(err)
	}
	wait("self-presence in the room", func(st any) bool {
		p, ok := st.(goxmpp.Presence)
		return ok && p.From == room+"/alice"
	})
	bob.Send(t, `<message to="`+room+`" type="groupchat" id="gx-2"><body>room says hi</body></message>`)
	wait("groupchat", func(st any) bool {
		m, ok := st.(goxmpp.Chat)
		return ok && m.Type == "groupchat" && m.Text == "room says hi"
	})
	// The room still sees alice once.
	bob.ExpectNone(t, 300*time.Millisecond, presenceFrom(room+"/alice"))
}

const slixJoin = `
import asyncio, sys, ssl
import slixmpp

class C(slixmpp.ClientXMPP):
    def __init__(self):
        super().__init__("alice@localhost/slix", sys.argv[2])
        self.ssl_context = ssl.create_default_context()
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.register_plugin("xep_0045")
        self.add_event_handler("session_start", self.start)
        self.add_event_handler("failed_auth", lambda *_: (print("AUTH FAILED"), sys.exit(3)))

    async def start(self, _):
        self.send_presence()
        await self.get_roster()
        try:
            await self.plugin["xep_0045"].join_muc_wait(sys.argv[3], "alice", maxstanzas=2, timeout=15)
        except Exception as e:
            print("JOIN FAILED", repr(e)); sys.stdout.flush(); self.disconnect(); return
        print("JOINED", sorted(self.plugin["xep_0045"].get_roster(sys.argv[3])))
        sys.stdout.flush()
        self.disconnect()

host, port = sys.argv[1].rsplit(":", 1)
c = C()
c.connect((host, int(port)))
asyncio.get_event_loop().run_until_complete(c.disconnected)
`

// slixmpp's join_muc_wait completes (self-presence with 110, then the
// subject) for a second client whose join the bouncer emulates.
func TestInteropSlixmppJoinWait(t *testing.T) {
	testdeps.Slixmpp(t)
	e := newEnv(t, nil, nil)
	room := "slix@" + e.srv.MUC
	bob := e.bobInRoom(room)
	a := e.availableClient("first")
	join(t, a, room, "alice", "")
	bob.Expect(t, "alice joins", presenceFrom(room+"/alice"))
	script := t.TempDir() + "/join.py"
	if err := os.WriteFile(script, []byte(slixJoin), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "/usr/bin/python3", script, e.lsrv.Addr().String(), localPassword, room).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "JOINED") {
		t.Fatalf("slixmpp join_muc_wait through the bouncer: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "'bob'") {
		t.Fatalf("slixmpp's roster lacks bob: %s", out)
	}
	bob.ExpectNone(t, 300*time.Millisecond, presenceFrom(room+"/alice"))
}
