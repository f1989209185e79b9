package listener

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"mellium.im/sasl"

	"xmppbouncer/stanza"
)

const testUA = "d9d8b6a4-3c1e-4f8a-9d3e-0c5f2b7a1e44"

// TestSASL2Offered: SASL2 is offered next to legacy SASL, with Bind2 and
// SM inline, and the legacy list is unchanged.
func TestSASL2Offered(t *testing.T) {
	srv := startServer(t, testConfig(t), newRecorder())
	c := dialS2(t, srv)
	if got := strings.Join(mechanismsOf(c.features), ","); got != "SCRAM-SHA-256,SCRAM-SHA-1,PLAIN" {
		t.Fatalf("legacy mechanisms: %s", got)
	}
	a := c.features.Child(nsSASL2, "authentication")
	var mechs []string
	for _, m := range a.ChildrenNamed(nsSASL2, "mechanism") {
		mechs = append(mechs, m.Text())
	}
	if !strings.Contains(strings.Join(mechs, ","), "SCRAM-SHA-256,SCRAM-SHA-1,PLAIN") {
		t.Fatalf("SASL2 mechanisms: %v", mechs)
	}
	in := a.Child(nsSASL2, "inline")
	if in == nil || in.Child(nsBind2, "bind") == nil || in.Child(nsSM, "sm") == nil {
		t.Fatalf("inline features: %s", a)
	}
	// Before TLS nothing of it shows.
	r := dialRaw(t, srv.Addr().String())
	r.send(t, header(testDomain))
	if f := r.mustNext(t); f.Child(nsSASL2, "authentication") != nil {
		t.Fatalf("SASL2 offered in the clear: %s", f)
	}
}

// TestSASL2PlainBind2Inline: PLAIN with Bind2, inline SM, carbons and
// CSI, in one round trip and without a stream restart; the resource is the
// tag plus a part that is stable per user-agent id.
func TestSASL2PlainBind2Inline(t *testing.T) {
	rec := newRecorder()
	srv := startServer(t, testConfig(t), rec)
	var resources []string
	for i := 0; i < 2; i++ {
		c := dialS2(t, srv)
		c.send(t, auth{mech: "PLAIN", initial: plainIR(testUser, testPassword), uaID: testUA, extra: bind2XML}.xml())
		s := c.mustNext(t)
		if !s.Is(nsSASL2, "success") {
			t.Fatalf("want success, got %s", s)
		}
		full := s.ChildText(nsSASL2, "authorization-identifier")
		if !strings.HasPrefix(full, testUser+"@"+testDomain+"/Conversations.") {
			t.Fatalf("authorization-identifier %q", full)
		}
		b := s.Child(nsBind2, "bound")
		if b == nil || b.Child(nsSM, "enabled") == nil || b.Child(stanza.NSCarbons, "enabled") == nil {
			t.Fatalf("bound lacks enabled: %s", s)
		}
		bc := rec.waitBound(t)
		if bc.JID.String() != full || bc.UserAgent().ID != testUA || bc.UserAgent().Software != "Conversations" || bc.UserAgent().Device != "Pixel 7" {
			t.Fatalf("bound client %s %+v", bc.JID, bc.UserAgent())
		}
		if !bc.Bind2Carbons() || bc.Mechanism() != "PLAIN" {
			t.Fatalf("carbons %v mechanism %s", bc.Bind2Carbons(), bc.Mechanism())
		}
		if e := rec.waitStanza(t); !e.el.Is(stanza.NSCSI, "inactive") || e.c != bc {
			t.Fatalf("handler got %s, want the inline <inactive/>", e.el)
		}
		// SM is on: a stanza to the client is followed by <r/>, and the
		// client's <r/> is answered.
		c.send(t, `<r xmlns='urn:xmpp:sm:3'/>`)
		if a := c.mustNext(t); !a.Is(nsSM, "a") || a.Get("h") != "0" {
			t.Fatalf("want <a h='0'/>, got %s", a)
		}
		c.send(t, `<iq type='get' id='p1' to='`+testDomain+`'><ping xmlns='urn:xmpp:ping'/></iq>`)
		if e := rec.waitStanza(t); e.el.ID() != "p1" {
			t.Fatalf("handler got %s", e.el)
		}
		resources = append(resources, bc.JID.Resourcepart())
		c.send(t, `</stream:stream>`)
		rec.waitClosed(t)
	}
	if resources[0] != resources[1] {
		t.Fatalf("same user agent, different resources: %v", resources)
	}
	// Another user agent gets another resource; none gets a random one.
	c := dialS2(t, srv)
	c.send(t, auth{mech: "PLAIN", initial: plainIR(testUser, testPassword), uaID: "another-phone", extra: bind2XML}.xml())
	if s := c.mustNext(t); strings.HasSuffix(s.ChildText(nsSASL2, "authorization-identifier"), resources[0]) {
		t.Fatalf("another user agent got the same resource: %s", s)
	}
}

// TestSASL2SCRAMThenLegacyBind: SCRAM-SHA-256 and SCRAM-SHA-1 over SASL2
// through mellium's client (which checks the server signature), without
// Bind2: new features follow at once, without a restart, and the legacy
// bind works.
func TestSASL2SCRAMThenLegacyBind(t *testing.T) {
	rec := newRecorder()
	srv := startServer(t, testConfig(t), rec)
	for i, mech := range []sasl.Mechanism{sasl.ScramSha256, sasl.ScramSha1} {
		c := dialS2(t, srv)
		s := c.scramLogin(t, mech, testPassword, testUA, "")
		if !s.Is(nsSASL2, "success") || s.ChildText(nsSASL2, "authorization-identifier") != testUser+"@"+testDomain {
			t.Fatalf("%s: %s", mech.Name, s)
		}
		f := c.mustNext(t)
		if !f.Is(stanza.NSStream, "features") || f.Child(stanza.NSBind, "bind") == nil {
			t.Fatalf("features after SASL2 success: %s", f)
		}
		res := fmt.Sprintf("legacy%d", i)
		c.send(t, `<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>`+res+`</resource></bind></iq>`)
		if r := c.mustNext(t); r.Type() != "result" {
			t.Fatalf("bind: %s", r)
		}
		if bc := rec.waitBound(t); bc.JID.Resourcepart() != res || bc.Mechanism() != mech.Name {
			t.Fatalf("bound %s with %s", bc.JID, bc.Mechanism())
		}
	}
}

// TestSASL2Failures: a wrong password, a wrong username and a bad
// mechanism get a SASL2 <failure/> with condition and text, delayed per
// address like legacy SASL failures and counted with them; the third
// closes the stream.
func TestSASL2Failures(t *testing.T) {
	cfg := testConfig(t)
	cfg.AuthFailDelay = 100 * time.Millisecond
	srv := startServer(t, cfg, newRecorder())
	c := dialS2(t, srv)
	before := srv.AuthFailures()
	start := time.Now()
	c.send(t, auth{mech: "PLAIN", initial: plainIR(testUser, "wrong"), uaID: testUA}.xml())
	f := c.mustNext(t)
	if !f.Is(nsSASL2, "failure") || f.Child(stanza.NSSASL, "not-authorized") == nil || f.ChildText(nsSASL2, "text") == "" {
		t.Fatalf("want failure with not-authorized and text, got %s", f)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Fatalf("failure came after %v, before the delay", d)
	}
	start = time.Now()
	if s := c.scramLogin(t, sasl.ScramSha256, "wrong", testUA, ""); !s.Is(nsSASL2, "failure") || s.Child(stanza.NSSASL, "not-authorized") == nil {
		t.Fatalf("SCRAM with a wrong password: %s", s)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("second failure came after %v; the delay must double", d)
	}
	c.send(t, auth{mech: "DIGEST-MD5", initial: []byte("x")}.xml())
	if f := c.mustNext(t); f.Child(stanza.NSSASL, "invalid-mechanism") == nil {
		t.Fatalf("unknown mechanism: %s", f)
	}
	if cond := c.streamErrorCond(t); cond != "policy-violation" {
		t.Fatalf("after three failures: %s", cond)
	}
	if n := srv.AuthFailures() - before; n != 3 {
		t.Fatalf("counted %d failures, want 3", n)
	}
	// A wrong username fails the same way.
	c = dialS2(t, srv)
	c.send(t, auth{mech: "PLAIN", initial: plainIR("mallory", testPassword)}.xml())
	if f := c.mustNext(t); f.Child(stanza.NSSASL, "not-authorized") == nil {
		t.Fatalf("wrong username: %s", f)
	}
}

// TestSASL2BadInput: out-of-order and oversized SASL2 elements get a
// failure or a stream error, and the server carries on.
func TestSASL2BadInput(t *testing.T) {
	rec := newRecorder()
	srv := startServer(t, testConfig(t), rec)

	// <authenticate/> twice.
	c := dialS2(t, srv)
	c.send(t, auth{mech: "PLAIN", initial: plainIR(testUser, testPassword)}.xml())
	if s := c.mustNext(t); !s.Is(nsSASL2, "success") {
		t.Fatalf("first: %s", s)
	}
	c.mustNext(t) // features
	c.send(t, auth{mech: "PLAIN", initial: plainIR(testUser, testPassword)}.xml())
	if cond := c.streamErrorCond(t); cond != "policy-violation" {
		t.Fatalf("authenticate twice: %s", cond)
	}

	// A huge initial response.
	c = dialS2(t, srv)
	c.send(t, auth{mech: "PLAIN", initial: []byte(strings.Repeat("A", 6000))}.xml())
	if f := c.mustNext(t); !f.Is(nsSASL2, "failure") || f.Child(stanza.NSSASL, "malformed-request") == nil {
		t.Fatalf("huge initial response: %s", f)
	}
	// Bad base64.
	c.send(t, `<authenticate xmlns='urn:xmpp:sasl:2' mechanism='PLAIN'><initial-response>!!!</initial-response></authenticate>`)
	if f := c.mustNext(t); f.Child(stanza.NSSASL, "incorrect-encoding") == nil {
		t.Fatalf("bad base64: %s", f)
	}

	// A <response/> outside an exchange.
	c = dialS2(t, srv)
	c.send(t, `<response xmlns='urn:xmpp:sasl:2'>AAAA</response>`)
	if cond := c.streamErrorCond(t); cond != "policy-violation" {
		t.Fatalf("stray response: %s", cond)
	}

	// An abort in the middle of SCRAM.
	c = dialS2(t, srv)
	cl := sasl.NewClient(sasl.ScramSha256, sasl.Credentials(func() ([]byte, []byte, []byte) { return []byte(testUser), []byte(testPassword), nil }))
	_, first, _ := cl.Step(nil)
	c.send(t, auth{mech: "SCRAM-SHA-256", initial: first}.xml())
	if ch := c.mustNext(t); !ch.Is(nsSASL2, "challenge") {
		t.Fatalf("want challenge: %s", ch)
	}
	c.send(t, `<abort xmlns='urn:xmpp:sasl:2'/>`)
	if f := c.mustNext(t); !f.Is(nsSASL2, "failure") || f.Child(stanza.NSSASL, "aborted") == nil {
		t.Fatalf("abort: %s", f)
	}

	// SASL2 before TLS.
	r := dialRaw(t, srv.Addr().String())
	r.send(t, header(testDomain))
	r.mustNext(t)
	r.send(t, auth{mech: "PLAIN", initial: plainIR(testUser, testPassword)}.xml())
	if cond := r.streamErrorCond(t); cond != "policy-violation" {
		t.Fatalf("SASL2 before TLS: %s", cond)
	}

	// A user-agent id far too long, and a Bind2 tag far too long.
	c = dialS2(t, srv)
	c.send(t, auth{mech: "PLAIN", initial: plainIR(testUser, testPassword), uaID: strings.Repeat("u", 300)}.xml())
	if f := c.mustNext(t); f.Child(stanza.NSSASL, "malformed-request") == nil {
		t.Fatalf("long user-agent id: %s", f)
	}
	c.send(t, auth{mech: "PLAIN", initial: plainIR(testUser, testPassword), uaID: testUA,
		extra: `<bind xmlns='urn:xmpp:bind:0'><tag>` + strings.Repeat("t", 1000) + `</tag></bind>`}.xml())
	s := c.mustNext(t)
	if full := s.ChildText(nsSASL2, "authorization-identifier"); !s.Is(nsSASL2, "success") || len(full) > len(testUser+"@"+testDomain+"/")+maxBind2Tag+9 {
		t.Fatalf("long tag: %s", s)
	}
	rec.waitBound(t)

	// Nothing else got bound, and a good login still works.
	c = dialS2(t, srv)
	c.send(t, auth{mech: "PLAIN", initial: plainIR(testUser, testPassword), extra: bind2XML}.xml())
	if s := c.mustNext(t); !s.Is(nsSASL2, "success") {
		t.Fatalf("good login: %s", s)
	}
	rec.waitBound(t)
}

// TestSASL2InlineResume: <resume/> inside <authenticate/> is answered with
// <resumed/> inside <success/>, then exactly the unacknowledged stanzas,
// under the same rules as a legacy <resume/>: an h beyond what was sent
// fails (inside the success) and Bind2 binds afresh instead.
func TestSASL2InlineResume(t *testing.T) {
	rec := newRecorder()
	srv := startServer(t, testConfig(t), rec)
	c := dialS2(t, srv)
	c.send(t, auth{mech: "PLAIN", initial: plainIR(testUser, testPassword), uaID: testUA, extra: bind2XML}.xml())
	s := c.mustNext(t)
	enabled := s.Child(nsBind2, "bound").Child(nsSM, "enabled")
	id := enabled.Get("id")
	if id == "" || enabled.Get("resume") != "true" {
		t.Fatalf("enabled: %s", enabled)
	}
	bc := rec.waitBound(t)
	rec.waitStanza(t) // the inline <inactive/>
	msg := func(i int) *stanza.Element {
		return stanza.MustParse(fmt.Sprintf(`<message xmlns='jabber:client' type='chat' id='m%d' from='bob@example.org/x'><body>%d</body></message>`, i, i))
	}
	for i := 1; i <= 3; i++ {
		bc.Send(msg(i))
	}
	for i := 1; i <= 3; i++ {
		if m := c.mustNext(t); m.ID() != fmt.Sprintf("m%d", i) {
			t.Fatalf("got %s", m)
		}
	}
	// The client handled one of its own stanzas and claims to have seen m1.
	c.send(t, `<presence/>`)
	rec.waitStanza(t)
	c.send(t, `<a xmlns='urn:xmpp:sm:3' h='1'/>`)
	time.Sleep(50 * time.Millisecond)
	c.Conn.Close() // the network drops
	deadline := time.Now().Add(5 * time.Second)
	for !bc.Hibernating() {
		if time.Now().After(deadline) {
			t.Fatal("no hibernation")
		}
		time.Sleep(10 * time.Millisecond)
	}
	bc.Send(msg(4))

	c2 := dialS2(t, srv)
	c2.send(t, auth{mech: "PLAIN", initial: plainIR(testUser, testPassword), uaID: testUA,
		extra: `<resume xmlns='urn:xmpp:sm:3' previd='` + id + `' h='1'/>` + bind2XML}.xml())
	s = c2.mustNext(t)
	r := s.Child(nsSM, "resumed")
	if !s.Is(nsSASL2, "success") || r == nil || r.Get("h") != "1" || r.Get("previd") != id ||
		s.ChildText(nsSASL2, "authorization-identifier") != bc.JID.String() || s.Child(nsBind2, "bound") != nil {
		t.Fatalf("want success with resumed h=1 and the full JID, no bound: %s", s)
	}
	var got []string
	for len(got) < 3 {
		el := c2.mustNext(t)
		if el.Kind() == "message" {
			got = append(got, el.ID())
		}
	}
	if strings.Join(got, ",") != "m2,m3,m4" {
		t.Fatalf("after resume got %v, want m2,m3,m4", got)
	}
	select {
	case b := <-rec.bound:
		t.Fatalf("a resume bound a new client %s", b.JID)
	default:
	}
	c2.send(t, `<message to='bob@example.org' id='back'><body>x</body></message>`)
	if e := rec.waitStanza(t); e.c != bc || e.el.ID() != "back" {
		t.Fatalf("resumed stream: %s", e.el)
	}

	// An h beyond what was sent: the resume fails inside the success
	// (the old session ends, as mod_smacks does), and Bind2 binds anew.
	c3 := dialS2(t, srv)
	c3.send(t, auth{mech: "PLAIN", initial: plainIR(testUser, testPassword), uaID: testUA,
		extra: `<resume xmlns='urn:xmpp:sm:3' previd='` + id + `' h='99'/>` + bind2XML}.xml())
	s = c3.mustNext(t)
	if f := s.Child(nsSM, "failed"); !s.Is(nsSASL2, "success") || f == nil || s.Child(nsBind2, "bound") == nil {
		t.Fatalf("want success with failed and bound: %s", s)
	}
	if e := rec.waitClosed(t); e.c != bc {
		t.Fatalf("closed %v", e.c.JID)
	}
	if nb := rec.waitBound(t); nb.JID.Resourcepart() != bc.JID.Resourcepart() {
		t.Fatalf("fresh bind got %s, want the stable resource %s", nb.JID, bc.JID)
	}

	// An unknown previd without Bind2: failed inside success, then the
	// features for a normal bind.
	c4 := dialS2(t, srv)
	c4.send(t, auth{mech: "PLAIN", initial: plainIR(testUser, testPassword),
		extra: `<resume xmlns='urn:xmpp:sm:3' previd='nope' h='0'/>`}.xml())
	s = c4.mustNext(t)
	if f := s.Child(nsSM, "failed"); f == nil || f.Child(stanza.NSStanzas, "item-not-found") == nil {
		t.Fatalf("unknown previd: %s", s)
	}
	if f := c4.mustNext(t); f.Child(stanza.NSBind, "bind") == nil {
		t.Fatalf("features: %s", f)
	}
}
