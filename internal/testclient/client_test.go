package testclient

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"xmppbouncer/internal/testserver"
	"xmppbouncer/stanza"
	"xmppbouncer/upstream"
)

func login(t *testing.T, s *testserver.Server, user, resource string) *Client {
	t.Helper()
	pool, err := upstream.LoadCAFile(s.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	return Dial(t, Options{Addr: s.Addr, JID: s.JID(user), Password: testserver.Password(user), Resource: resource, RootCAs: pool})
}

func TestMessageAndBacklog(t *testing.T) {
	s := testserver.Start(t)
	alice := login(t, s, testserver.Alice, "phone")
	bob := login(t, s, testserver.Bob, "laptop")
	if got := bob.JID().String(); got != "bob@localhost/laptop" {
		t.Fatalf("bound %s", got)
	}
	bob.Send(t, `<presence/>`)
	bob.Expect(t, "own presence", All(Kind("presence"), From("bob@localhost/laptop")))

	alice.Send(t, `<message to='bob@localhost' type='chat' id='m1'><body>one</body></message>`)
	alice.Send(t, `<message to='bob@localhost' type='chat' id='m2'><body>two &amp; more</body></message>`)
	// Taking the second first leaves the first in the backlog.
	m2 := bob.Expect(t, "message two", IsMessage("two & more"))
	if m2.ID() != "m2" || m2.From() != "alice@localhost/phone" || m2.Type() != "chat" {
		t.Fatalf("message two: %s", m2)
	}
	m1 := bob.Expect(t, "message one", ByID("m1"))
	if m1.ChildText(stanza.NSClient, "body") != "one" {
		t.Fatalf("message one: %s", m1)
	}
	bob.ExpectNone(t, 200*time.Millisecond, Kind("message"))

	// Drain forgets what arrived.
	alice.Send(t, `<message to='bob@localhost/laptop' id='m3'><body>three</body></message>`)
	for deadline := time.Now().Add(5 * time.Second); len(bob.Backlog()) == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("message three did not arrive")
		}
	}
	bob.Drain()
	bob.ExpectNone(t, 100*time.Millisecond, ByID("m3"))
}

func TestExpectReportsTimeout(t *testing.T) {
	s := testserver.Start(t)
	bob := login(t, s, testserver.Bob, "x")
	bob.Timeout = 100 * time.Millisecond
	ft := &fakeT{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		bob.Expect(ft, "a message that never comes", IsMessage("never"))
	}()
	<-done
	if !strings.Contains(ft.msg, "a message that never comes") || !strings.Contains(ft.msg, "100ms") {
		t.Fatalf("failure message %q", ft.msg)
	}
}

// fakeT records a Fatalf instead of ending the test, to check the failure
// messages themselves.
type fakeT struct {
	testing.TB
	msg string
}

func (f *fakeT) Helper() {}
func (f *fakeT) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestIQPing(t *testing.T) {
	s := testserver.Start(t)
	alice := login(t, s, testserver.Alice, "r")
	res := alice.IQ(t, `<iq type='get' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`)
	if res.Type() != "result" || !strings.HasPrefix(res.ID(), "tc-") {
		t.Fatalf("ping: %s", res)
	}
	res = alice.IQ(t, `<iq type='get' id='bad' to='localhost'><nonsense xmlns='urn:example:none'/></iq>`)
	if res.Type() != "error" || stanza.ErrorCondition(res) != "service-unavailable" {
		t.Fatalf("unknown iq: %s", res)
	}
}

func TestPeerStreamErrorIsVisible(t *testing.T) {
	s := testserver.Start(t)
	first := login(t, s, testserver.Carol, "same")
	// Prosody resolves a resource conflict by ending the older session
	// with <conflict/> (RFC 6120 §7.7.2.2).
	login(t, s, testserver.Carol, "same")
	first.WaitClosed(t)
	if got := first.StreamErrorCondition(); got != "conflict" {
		t.Fatalf("StreamErrorCondition() = %q (err %v), want conflict", got, first.Err())
	}
}

func TestWrongPasswordFromTryDial(t *testing.T) {
	s := testserver.Start(t)
	_, err := TryDial(t.Context(), Options{Addr: s.DirectTLSAddr, DirectTLS: true, JID: s.JID("alice"), Password: "nope", InsecureSkipVerify: true})
	if err == nil || !strings.Contains(err.Error(), "rejected the credentials") {
		t.Fatalf("err = %v", err)
	}
}
