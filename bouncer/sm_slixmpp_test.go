package bouncer

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"xmppbouncer/internal/testdeps"
	"xmppbouncer/stanza"
)

// slixResume drives slixmpp's xep_0198 plugin through a drop and a resume.
// It talks to the test on stdin/stdout, one line per step.
const slixResume = `
import asyncio, sys, ssl, collections
import slixmpp

host, port = sys.argv[1].rsplit(":", 1)
room = sys.argv[3]
counts = collections.Counter()

def say(*a):
    print(*a, flush=True)

class C(slixmpp.ClientXMPP):
    def __init__(self):
        super().__init__("alice@localhost/slix", sys.argv[2])
        self.ssl_context = ssl.create_default_context()
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.register_plugin("xep_0045")
        self.register_plugin("xep_0198")
        self.add_event_handler("session_start", self.start)
        self.add_event_handler("session_resumed", lambda _: say("RESUMED"))
        self.add_event_handler("sm_enabled", lambda _: say("ENABLED"))
        self.add_event_handler("sm_failed", lambda _: say("SM-FAILED"))
        self.add_event_handler("message", self.got)

    def got(self, msg):
        if msg["body"]:
            counts[msg["body"]] += 1
            say("GOT", msg["body"])

    async def start(self, _):
        self.send_presence()
        await self.plugin["xep_0045"].join_muc_wait(room, "alice", maxstanzas=0, timeout=15)
        say("JOINED")

async def main():
    c = C()
    loop = asyncio.get_event_loop()
    c.connect((host, int(port)))
    async def line():
        return (await loop.run_in_executor(None, sys.stdin.readline)).strip()
    assert await line() == "drop"
    c.abort()
    await asyncio.sleep(0.3)
    say("DROPPED", c.plugin["xep_0198"].sm_id is not None)
    assert await line() == "resume"
    c.connect((host, int(port)))
    for _ in range(100):
        if counts["psst"] and counts["while away"]:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    say("COUNTS", dict(counts))
    c.disconnect()
    await asyncio.sleep(0.3)

asyncio.get_event_loop().run_until_complete(main())
`

// TestSMResumeSlixmpp: slixmpp's xep_0198 plugin enables resumption, loses
// its TCP connection without closing the stream, and resumes; a room
// message and a chat sent meanwhile arrive exactly once, nothing arrives
// twice, and the room never saw alice leave.
func TestSMResumeSlixmpp(t *testing.T) {
	testdeps.Slixmpp(t)
	e := newEnv(t, nil, nil)
	room := "slixsm@" + e.srv.MUC
	bob := e.bobInRoom(room)
	script := t.TempDir() + "/resume.py"
	if err := os.WriteFile(script, []byte(slixResume), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/usr/bin/python3", script, e.lsrv.Addr().String(), localPassword, room)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var out []string
	wait := func(prefix string) string {
		t.Helper()
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("slixmpp ended before %s: %v\n%s", prefix, out, stderr.String())
				}
				out = append(out, l)
				if strings.HasPrefix(l, prefix) {
					return l
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("slixmpp: no %s: %v\n%s", prefix, out, stderr.String())
			}
		}
	}
	wait("ENABLED")
	wait("JOINED")
	bob.Expect(t, "alice joins", presenceFrom(room+"/alice"))
	bob.Send(t, `<message to='`+room+`' type='groupchat' id='b1'><body>before</body></message>`)
	wait("GOT before")
	e.waitFor("before acknowledged", func() bool { s, d, _, _ := e.counters("slix"); return s > 0 && s == d })
	_, _ = io.WriteString(stdin, "drop\n")
	if l := wait("DROPPED"); l != "DROPPED True" {
		t.Fatalf("slixmpp has no resumption id: %s", l)
	}
	e.waitFor("hibernation", func() bool { _, _, h, _ := e.counters("slix"); return h })
	sent, _, _, _ := e.counters("slix")
	bob.Send(t, `<message to='`+room+`' type='groupchat' id='b2'><body>while away</body></message>`)
	bob.Send(t, `<message to='`+e.cfg.Upstream.JID+`' type='chat' id='b3'><body>psst</body></message>`)
	e.waitFor("both queued", func() bool { s, _, _, _ := e.counters("slix"); return s >= sent+2 })
	_, _ = io.WriteString(stdin, "resume\n")
	wait("RESUMED")
	counts := wait("COUNTS")
	for _, want := range []string{"'before': 1", "'while away': 1", "'psst': 1"} {
		if !strings.Contains(counts, want) {
			t.Fatalf("slixmpp received %s, want %s once each", counts, want)
		}
	}
	if strings.Contains(strings.Join(out, "\n"), "SM-FAILED") {
		t.Fatalf("slixmpp: %v", out)
	}
	bob.ExpectNone(t, 300*time.Millisecond, func(el *stanza.Element) bool {
		return el.Kind() == "presence" && el.From() == room+"/alice" && el.Type() == "unavailable"
	})
}
