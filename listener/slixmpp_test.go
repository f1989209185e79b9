package listener

import (
	"context"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"xmppbouncer/internal/testdeps"
	"xmppbouncer/stanza"
)

// systemPython has Debian's python3-slixmpp (the pyenv python on PATH has not).
const systemPython = "/usr/bin/python3"

// slixmppClient logs in with slixmpp, sends a message to its own bare JID
// and waits for the handler's "pong". Certificate checks are off: the test
// server's certificate is self-signed.
const slixmppClient = `
import asyncio, ssl, sys
import slixmpp

jid, pw, port, mech, direct = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5] == "1"

class Client(slixmpp.ClientXMPP):
    def __init__(self):
        super().__init__(jid + "/slix", pw)
        self.done = self.loop.create_future()
        self.add_event_handler("session_start", self.start)
        self.add_event_handler("message", self.message)
        self.add_event_handler("failed_all_auth", lambda e: self.finish("AUTH-FAILED"))
        self.add_event_handler("connection_failed", lambda e: self.finish("CONNECTION-FAILED %s" % e))
        self.add_event_handler("disconnected", lambda e: self.finish("DISCONNECTED %s" % e))

    def finish(self, result):
        if not self.done.done():
            self.done.set_result(result)

    async def start(self, event):
        self.send_message(mto=jid, mbody="ping-from-slixmpp")

    def message(self, msg):
        if msg["body"] == "pong":
            self.finish("LOGIN-OK %s %s" % (self.boundjid.full, self["feature_mechanisms"].mech.name))

c = Client()
c.ssl_context.check_hostname = False
c.ssl_context.verify_mode = ssl.CERT_NONE
c["feature_mechanisms"].use_mech = mech
c.connect(address=("127.0.0.1", port), use_ssl=direct)
try:
    result = c.loop.run_until_complete(asyncio.wait_for(c.done, 20))
except asyncio.TimeoutError:
    result = "TIMEOUT"
print(result, flush=True)
c.disconnect()
c.loop.run_until_complete(asyncio.sleep(0.2))
sys.exit(0 if result.startswith("LOGIN-OK") else 1)
`

func TestSlixmppLogsIn(t *testing.T) {
	testdeps.Slixmpp(t)
	rec := newRecorder()
	rec.onStz = func(c *Client, el *stanza.Element) {
		if el.Kind() == "message" && el.ChildText(stanza.NSClient, "body") == "ping-from-slixmpp" {
			c.Send(stanza.New(stanza.NSClient, "message", "to", c.JID.String(), "type", "chat", "id", "pong1").
				Append(stanza.New(stanza.NSClient, "body").AppendText("pong")))
		}
	}
	srv := startServer(t, testConfig(t), rec)
	for _, c := range []struct {
		mech   string
		direct bool
	}{{"SCRAM-SHA-256", false}, {"SCRAM-SHA-1", false}, {"SCRAM-SHA-256", true}} {
		name := c.mech
		if c.direct {
			name += "/direct"
		}
		t.Run(name, func(t *testing.T) {
			port := srv.Addr().(*net.TCPAddr).Port
			if c.direct {
				port = srv.DirectTLSAddr().(*net.TCPAddr).Port
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			direct := "0"
			if c.direct {
				direct = "1"
			}
			out, err := exec.CommandContext(ctx, systemPython, "-c", slixmppClient,
				testUser+"@"+testDomain, testPassword, strconv.Itoa(port), c.mech, direct).CombinedOutput()
			if err != nil {
				t.Fatalf("slixmpp: %v\n%s", err, out)
			}
			want := "LOGIN-OK " + testUser + "@" + testDomain + "/slix " + c.mech
			if !strings.Contains(string(out), want) {
				t.Fatalf("slixmpp output lacks %q:\n%s", want, out)
			}
			b := rec.waitBound(t)
			if b.JID.Resourcepart() != "slix" || b.Mechanism() != c.mech {
				t.Fatalf("bound %s with %s", b.JID, b.Mechanism())
			}
			rec.waitClosed(t)
		})
	}
}
