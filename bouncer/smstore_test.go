package bouncer

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"xmppbouncer/internal/testserver"
	"xmppbouncer/stanza"
)

// A phone's XEP-0198 session survives a restart of the bouncer: its
// <resume/> afterwards works, and it gets exactly what it had not
// acknowledged (a chat and a room message sent before the restart, and
// what came while the bouncer was down), each once, rebuilt from the
// durable chat queue and the archive. An unknown id still gets
// item-not-found.
func TestSMResumeAfterRestart(t *testing.T) {
	e := newEnv(t, nil, nil)
	room := "hib@" + e.srv.MUC
	bob := e.bobInRoom(room)
	ph := e.dialSM(t)
	ph.bind("phone")
	id := ph.enable()
	ph.received()
	ph.write(`<presence/>`)
	ph.write(`<presence to="` + room + `/alice"><x xmlns="http://jabber.org/protocol/muc"><history maxstanzas="0"/></x></presence>`)
	ph.expect("subject", func(el *stanza.Element) bool { return el.Kind() == "message" && isSubject(el) })
	bob.Expect(t, "alice joins", presenceFrom(room+"/alice"))
	bob.Send(t, `<message to="alice@localhost" type="chat" id="a1"><body>acked chat</body></message>`)
	bob.Send(t, `<message to="`+room+`" type="groupchat" id="a2"><body>acked room</body></message>`)
	ph.expect("acked chat", hasBody("acked chat"))
	ph.expect("acked room", hasBody("acked room"))
	h := len(ph.received())
	ph.write(fmt.Sprintf(`<a xmlns='urn:xmpp:sm:3' h='%d'/>`, h))
	bob.Send(t, `<message to="alice@localhost" type="chat" id="u1"><body>unacked chat</body></message>`)
	bob.Send(t, `<message to="`+room+`" type="groupchat" id="u2"><body>unacked room</body></message>`)
	ph.expect("unacked chat", hasBody("unacked chat"))
	ph.expect("unacked room", hasBody("unacked room"))
	time.Sleep(time.Second) // the sweep stores the session's rooms
	e.stop()
	bob.Send(t, `<message to="alice@localhost" type="chat" id="d1"><body>chat while down</body></message>`)
	bob.Send(t, `<message to="`+room+`" type="groupchat" id="d2"><body>room while down</body></message>`)
	bob.Expect(t, "own echo", hasBody("room while down"))
	e.start()

	bad := e.dialSMAuthOnly(t, "no-such-id", 3)
	if f := bad.expect("failed", isSM("failed")); f.Child(stanza.NSStanzas, "item-not-found") == nil {
		t.Fatalf("unknown id: %s", f)
	}

	start := time.Now()
	ph2 := e.dialSMResume(t, id, h)
	r := ph2.expect("resumed", isSM("resumed"))
	if r.Get("previd") != id {
		t.Fatalf("resumed: %s", r)
	}
	want := map[string]int{"unacked chat": 0, "unacked room": 0, "chat while down": 0, "room while down": 0}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		done := true
		for _, n := range want {
			done = done && n > 0
		}
		if done {
			break
		}
		time.Sleep(50 * time.Millisecond)
		for _, el := range ph2.received() {
			if el.Kind() == "message" && el.Child(stanza.NSClient, "body") != nil {
				b := el.ChildText(stanza.NSClient, "body")
				if _, ok := want[b]; !ok {
					t.Fatalf("got %q again after the resume: %s", b, el)
				}
				want[b]++
			}
		}
	}
	t.Logf("resume after restart: everything back in %v, %d bytes read, %d written", time.Since(start).Round(time.Millisecond), func() int { r, _ := ph2.traffic(); return r }(), func() int { _, w := ph2.traffic(); return w }())
	time.Sleep(500 * time.Millisecond)
	for _, el := range ph2.received() {
		if b := el.ChildText(stanza.NSClient, "body"); b != "" && el.Kind() == "message" {
			want[b]++
		}
	}
	for b, n := range want {
		if n != 1 {
			t.Errorf("%q reached the resumed phone %d times", b, n)
		}
	}
	// The session is live: new traffic flows, and it stays in the room.
	bob.Send(t, `<message to="`+room+`" type="groupchat" id="n1"><body>after the resume</body></message>`)
	ph2.expect("live room message", hasBody("after the resume"))
}

// dialSMAuthOnly authenticates and sends <resume/> for id, h.
func (e *env) dialSMAuthOnly(t *testing.T, id string, h int) *smClient {
	return e.dialSMResume(t, id, h)
}

// The real binary stops with SIGTERM while a phone has chats it has not
// acknowledged, and starts again: the phone's resume gets each of them
// once (they are not also put in the offline store at the shutdown).
func TestSMResumeAfterCleanRestart(t *testing.T) {
	srv := testserver.Start(t)
	dir := t.TempDir()
	bin := buildBinary(t, dir)
	listen, direct := freeListen(t), freeListen(t)
	cfgPath := killLoopConfig(t, srv, dir, listen, direct, "none@"+srv.MUC)
	cmd, log := runBinary(t, bin, cfgPath)
	log.wait(t, "upstream online", 20*time.Second)
	bob := (&env{t: t, srv: srv}).availableUser("bob", "desk")
	ph := &probePhone{t: t, addr: direct, res: "phone"}
	ph.connect()
	ph.c.expect("own presence", func(el *stanza.Element) bool { return el.Kind() == "presence" })
	ph.ack()
	for i := 0; i < 3; i++ {
		bob.Send(t, fmt.Sprintf(`<message to="alice@localhost" type="chat" id="t%d"><body>unacked %d</body></message>`, i, i))
		ph.c.expect("chat", hasBody(fmt.Sprintf("unacked %d", i)))
	}
	time.Sleep(300 * time.Millisecond)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v", err)
	}
	ph.drop()
	_, log = runBinary(t, bin, cfgPath)
	log.wait(t, "upstream online", 20*time.Second)
	if !ph.connect() {
		t.Fatal("the phone could not resume after the restart")
	}
	time.Sleep(1500 * time.Millisecond)
	got := map[string]int{}
	for _, el := range ph.c.received() {
		if b := el.ChildText(stanza.NSClient, "body"); b != "" && el.Kind() == "message" {
			got[b]++
		}
	}
	for i := 0; i < 3; i++ {
		if b := fmt.Sprintf("unacked %d", i); got[b] != 1 {
			t.Errorf("%q reached the phone %d times (all: %v)", b, got[b], got)
		}
	}
}
