package bouncer

import (
	"crypto/tls"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"xmppbouncer/stanza"
)

// TestReconnectCostSASL2 measures, for one client in 20 rooms of 50
// occupants that comes back after a drop with nothing missed, the round
// trips after TLS, the bytes after TLS (both directions, from the first
// stream header to <resumed/>) and the time on loopback (dial to
// <resumed/>, TLS included) of: FAST with inline resume, SASL2 SCRAM with
// inline resume, and today's legacy path (SCRAM, restart, <resume/>), each
// done the way Conversations does it (it waits for the features before it
// authenticates). The figures are logged; the round trips are asserted.
func TestReconnectCostSASL2(t *testing.T) {
	const rooms, occupants = 20, 50
	e := newBusyEnv(t, "c", rooms, occupants)

	// First login: SCRAM, Bind2 with SM, a FAST token, 20 joins.
	c := e.dialS2(t)
	cl, first := scramClient(e.localUser())
	s := c.authenticate("SCRAM-SHA-256", cl, first, conversationsBind2+`<request-token xmlns='urn:xmpp:fast:0' mechanism='HT-SHA-256-NONE'/>`)
	full := s.ChildText(nsSASL2Test, "authorization-identifier")
	res := full[strings.IndexByte(full, '/')+1:]
	id := s.Child(nsBind2Test, "bound").Child(nsSMTest, "enabled").Get("id")
	token := s.Child(nsFASTTest, "token").Get("token")
	var joins strings.Builder
	joins.WriteString(`<presence/>`)
	for i := 0; i < rooms; i++ {
		fmt.Fprintf(&joins, `<presence to='c%02d@conference.localhost/alice'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>`, i)
	}
	c.write(joins.String())
	for i := 0; i < rooms; i++ {
		c.expect("a subject", func(el *stanza.Element) bool { return el.Kind() == "message" && isSubject(el) })
	}
	h := 0
	ackAll := func(c *smClient) {
		e.waitFor("all acked", func() bool {
			h += len(c.received())
			c.write(fmt.Sprintf(`<a xmlns='urn:xmpp:sm:3' h='%d'/>`, h))
			time.Sleep(50 * time.Millisecond)
			s, d, _, _ := e.counters(res)
			return s == d
		})
	}
	ackAll(c.smClient)
	if h < rooms*(occupants+1) {
		t.Fatalf("full login got %d stanzas", h)
	}
	drop := func(c *smClient) {
		c.drop()
		e.waitFor("hibernation", func() bool { _, _, hib, _ := e.counters(res); return hib })
	}
	drop(c.smClient)
	resume := fmt.Sprintf(`<resume xmlns='urn:xmpp:sm:3' previd='%s' h='%%d'/>`, id)

	type figure struct {
		name        string
		rt          int
		read, wrote int
		took        time.Duration
	}
	var figs []figure
	check := func(name string, sc *s2Client, start time.Time, want int) {
		t.Helper()
		took := time.Since(start)
		r, w := sc.traffic()
		if sc.roundTrips != want {
			t.Errorf("%s: %d round trips after TLS, want %d", name, sc.roundTrips, want)
		}
		figs = append(figs, figure{name, sc.roundTrips, r, w, took})
		time.Sleep(100 * time.Millisecond)
		if got := sc.received(); len(got) != 0 {
			t.Fatalf("%s resent %d stanzas, want none", name, len(got))
		}
		ackAll(sc.smClient)
		drop(sc.smClient)
	}

	// FAST with inline resume.
	start := time.Now()
	c = e.dialS2(t)
	s = c.authenticate("HT-SHA-256-NONE", nil, htInitial(e.localUser(), token),
		fmt.Sprintf(resume, h)+`<fast xmlns='urn:xmpp:fast:0' count='1'/>`+conversationsBind2)
	if s.Child(nsSMTest, "resumed") == nil {
		t.Fatalf("FAST resume: %s", s)
	}
	check("FAST + inline resume", c, start, 2)

	// SASL2 SCRAM with inline resume.
	start = time.Now()
	c = e.dialS2(t)
	cl, first = scramClient(e.localUser())
	s = c.authenticate("SCRAM-SHA-256", cl, first, fmt.Sprintf(resume, h)+conversationsBind2)
	if s.Child(nsSMTest, "resumed") == nil {
		t.Fatalf("SCRAM resume: %s", s)
	}
	check("SASL2 SCRAM + inline resume", c, start, 3)

	// Legacy: SCRAM, stream restart, <resume/>.
	start = time.Now()
	c = e.dialLegacySCRAM(t)
	c.write(header(e.srv.Domain))
	c.roundTrips++
	if f := c.readOne(c.d); f.Child(nsSMTest, "sm") == nil {
		t.Fatalf("features after SASL: %s", f)
	}
	c.write(fmt.Sprintf(resume, h))
	c.roundTrips++
	if r := c.readOne(c.d); !r.Is(nsSMTest, "resumed") {
		t.Fatalf("legacy resume: %s", r)
	}
	go c.readLoop(c.d)
	check("legacy SCRAM + restart + resume", c, start, 5)

	for _, f := range figs {
		t.Logf("%-32s %d round trips after TLS, %5d B read + %4d B written after TLS, %v (loopback, %d rooms x %d occupants)",
			f.name, f.rt, f.read, f.wrote, f.took.Round(10*time.Microsecond), rooms, occupants)
	}
}

// dialLegacySCRAM logs in with legacy SASL SCRAM-SHA-256 (RFC 6120 §6)
// over direct TLS and stops at <success/>, counting round trips.
func (e *env) dialLegacySCRAM(t *testing.T) *s2Client {
	t.Helper()
	raw, err := net.Dial("tcp", e.lsrv.DirectTLSAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"xmpp-client"}})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c := &smClient{t: t, raw: raw, tc: tc, arrive: make(chan struct{}, 1), ended: make(chan struct{})}
	t.Cleanup(func() { raw.Close() })
	c.bytes = &countConn{Conn: tc}
	s := &s2Client{smClient: c, d: xml.NewDecoder(c.bytes)}
	c.write(header(e.srv.Domain))
	s.roundTrips++
	c.readOne(s.d)
	cl, first := scramClient(e.localUser())
	const ns = "urn:ietf:params:xml:ns:xmpp-sasl"
	c.write(`<auth xmlns='` + ns + `' mechanism='SCRAM-SHA-256'>` + base64.StdEncoding.EncodeToString(first) + `</auth>`)
	for {
		s.roundTrips++
		el := c.readOne(s.d)
		switch {
		case el.Is(ns, "challenge"):
			ch, _ := base64.StdEncoding.DecodeString(el.Text())
			_, resp, err := cl.Step(ch)
			if err != nil {
				t.Fatal(err)
			}
			c.write(`<response xmlns='` + ns + `'>` + base64.StdEncoding.EncodeToString(resp) + `</response>`)
		case el.Is(ns, "success"):
			fin, _ := base64.StdEncoding.DecodeString(el.Text())
			if _, _, err := cl.Step(fin); err != nil {
				t.Fatal(err)
			}
			s.d = xml.NewDecoder(c.bytes) // the stream restarts
			return s
		default:
			t.Fatalf("legacy SCRAM: %s", el)
		}
	}
}
