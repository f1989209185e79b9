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
		if b == nil || b.Child(nsSM, "enabled") == nil {
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

	// Nothing got bound, and a good login still works.
	c = dialS2(t, srv)
	c.send(t, auth{mech: "PLAIN", initial: plainIR(testUser, testPassword), extra: bind2XML}.xml())
	if s := c.mustNext(t); !s.Is(nsSASL2, "success") {
		t.Fatalf("good login: %s", s)
	}
	rec.waitBound(t)
}
