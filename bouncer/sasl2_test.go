package bouncer

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"mellium.im/sasl"

	"xmppbouncer/stanza"
)

const (
	nsSASL2Test = "urn:xmpp:sasl:2"
	nsBind2Test = "urn:xmpp:bind:0"
	nsFASTTest  = "urn:xmpp:fast:0"
	phoneUA     = "5f0c2d1e-8a7b-4c3d-9e2f-1a2b3c4d5e6f"
)

// s2Client is a raw-XML client that logs in the way Conversations does
// (XmppConnection.java, Bind2.java, HashedToken.java): direct TLS, wait for
// the features, then one <authenticate/> carrying the user agent, Bind2
// with its inline enables, an inline <resume/> and FAST elements. It counts
// round trips after TLS (each time it must wait for the server before it
// can write again) and bytes from its first stream header on.
type s2Client struct {
	*smClient
	d          *xml.Decoder
	roundTrips int
	features   *stanza.Element
}

func (e *env) dialS2(t *testing.T) *s2Client {
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
	s.features = c.readOne(s.d)
	if s.features.Child(nsSASL2Test, "authentication") == nil {
		t.Fatalf("features lack SASL2: %s", s.features)
	}
	return s
}

// authenticate sends one <authenticate/> and runs the exchange to its end,
// returning <success/> (checked by the SCRAM client when it is SCRAM) or
// <failure/>. Stanzas after it are read by the read loop.
func (s *s2Client) authenticate(mech string, cl *sasl.Negotiator, initial []byte, inline string) *stanza.Element {
	t := s.t
	t.Helper()
	s.write(fmt.Sprintf(`<authenticate xmlns='urn:xmpp:sasl:2' mechanism='%s'><initial-response>%s</initial-response>`+
		`<user-agent id='%s'><software>Conversations</software><device>Pixel 7</device></user-agent>%s</authenticate>`,
		mech, base64.StdEncoding.EncodeToString(initial), phoneUA, inline))
	for {
		s.roundTrips++
		el := s.readOne(s.d)
		if !el.Is(nsSASL2Test, "challenge") {
			if el.Is(nsSASL2Test, "success") && cl != nil {
				fin, _ := base64.StdEncoding.DecodeString(el.ChildText(nsSASL2Test, "additional-data"))
				if _, _, err := cl.Step(fin); err != nil {
					t.Fatalf("server signature: %v", err)
				}
			}
			go s.readLoop(s.d)
			return el
		}
		ch, _ := base64.StdEncoding.DecodeString(el.Text())
		_, resp, err := cl.Step(ch)
		if err != nil {
			t.Fatal(err)
		}
		s.write(`<response xmlns='urn:xmpp:sasl:2'>` + base64.StdEncoding.EncodeToString(resp) + `</response>`)
	}
}

func scramClient(user string) (*sasl.Negotiator, []byte) {
	cl := sasl.NewClient(sasl.ScramSha256, sasl.Credentials(func() ([]byte, []byte, []byte) {
		return []byte(user), []byte(localPassword), nil
	}))
	_, first, _ := cl.Step(nil)
	return cl, first
}

func htInitial(user, token string) []byte {
	return append([]byte(user+"\x00"), htMAC(token)...)
}

func (e *env) localUser() string { return strings.SplitN(e.cfg.Upstream.JID, "@", 2)[0] }

// conversationsBind2 is Conversations' Bind2 request.
const conversationsBind2 = `<bind xmlns='urn:xmpp:bind:0'><tag>Conversations</tag>` +
	`<enable xmlns='urn:xmpp:carbons:2'/><enable xmlns='urn:xmpp:sm:3' resume='true'/></bind>`

// TestConversationsStyleLogin: a first login with SCRAM-SHA-256, Bind2,
// inline SM and carbons and a FAST token request; a drop; a FAST login
// with inline resume that gets exactly the missed stanzas in two round
// trips after TLS; and, once the hibernation expired, a FAST login whose
// resume fails inside the <success/> and which binds afresh, on the same
// resource.
func TestConversationsStyleLogin(t *testing.T) {
	e := newEnv(t, nil, func(c *configT) { c.Limits.ResumeTimeout.Duration = 3 * time.Second })
	room := "phones@" + e.srv.MUC
	bob := e.bobInRoom(room)

	c := e.dialS2(t)
	cl, first := scramClient(e.localUser())
	s := c.authenticate("SCRAM-SHA-256", cl, first, conversationsBind2+`<request-token xmlns='urn:xmpp:fast:0' mechanism='HT-SHA-256-NONE'/>`)
	full := s.ChildText(nsSASL2Test, "authorization-identifier")
	enabled := s.Child(nsBind2Test, "bound").Child(nsSMTest, "enabled")
	token := s.Child(nsFASTTest, "token").Get("token")
	if !strings.Contains(full, "/Conversations.") || enabled == nil || enabled.Get("id") == "" || token == "" {
		t.Fatalf("first login: %s", s)
	}
	res := full[strings.IndexByte(full, '/')+1:]
	e.waitFor("inline carbons enable reaches the session", func() bool {
		var carbons bool
		e.b.Do(func() {
			if s := e.b.reg.ByResource(res); s != nil {
				carbons = s.Carbons
			}
		})
		return carbons
	})
	c.write(`<presence/>`)
	c.write(`<presence to='` + room + `/alice'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>`)
	c.expect("room subject", func(el *stanza.Element) bool { return fromRoom(room)(el) && isSubject(el) })
	bob.Send(t, `<message to='`+room+`' type='groupchat' id='g1'><body>before</body></message>`)
	c.expect("before", hasBody("before"))
	got := c.received()
	acked := len(got) - 1 // "before" was lost with the connection
	c.write(fmt.Sprintf(`<a xmlns='urn:xmpp:sm:3' h='%d'/>`, acked))
	time.Sleep(50 * time.Millisecond)
	c.drop()
	e.waitFor("hibernation", func() bool { _, _, h, _ := e.counters(res); return h })
	sent, _, _, _ := e.counters(res)
	bob.Send(t, `<message to='`+room+`' type='groupchat' id='g2'><body>while away</body></message>`)
	bob.Send(t, `<message to='`+e.cfg.Upstream.JID+`' type='chat' id='c1'><body>psst</body></message>`)
	e.waitFor("both queued", func() bool { s, _, _, _ := e.counters(res); return s >= sent+2 })

	// FAST with inline resume: two round trips after TLS.
	c2 := e.dialS2(t)
	s = c2.authenticate("HT-SHA-256-NONE", nil, htInitial(e.localUser(), token),
		fmt.Sprintf(`<resume xmlns='urn:xmpp:sm:3' previd='%s' h='%d'/><fast xmlns='urn:xmpp:fast:0' count='1'/>`, enabled.Get("id"), acked)+conversationsBind2)
	r := s.Child(nsSMTest, "resumed")
	if !s.Is(nsSASL2Test, "success") || r == nil || s.ChildText(nsSASL2Test, "authorization-identifier") != full || s.Child(nsBind2Test, "bound") != nil {
		t.Fatalf("FAST inline resume: %s", s)
	}
	if c2.roundTrips != 2 {
		t.Fatalf("FAST + inline resume took %d round trips after TLS, want 2", c2.roundTrips)
	}
	c2.expect("psst", hasBody("psst"))
	time.Sleep(300 * time.Millisecond)
	var bodies []string
	for _, el := range c2.received() {
		if b := el.ChildText(stanza.NSClient, "body"); b != "" {
			bodies = append(bodies, b)
		}
	}
	// The unacked one first, then what came while away, each once (the
	// chat and the room message reach the bouncer in either order).
	if len(bodies) != 3 || bodies[0] != "before" || !strings.Contains(strings.Join(bodies[1:], "|"), "while away") || !strings.Contains(strings.Join(bodies[1:], "|"), "psst") {
		t.Fatalf("after the resume got %q, want exactly before, then while away and psst", bodies)
	}
	c2.write(`<message to='` + room + `' type='groupchat' id='g3'><body>back</body></message>`)
	bob.Expect(t, "back", hasBody("back"))

	// Hibernation expires; the next FAST login's resume fails inside the
	// success and Bind2 binds the same resource afresh.
	c2.drop()
	e.waitFor("hibernation", func() bool { _, _, h, _ := e.counters(res); return h })
	e.waitFor("expiry", func() bool { _, _, _, ok := e.counters(res); return !ok })
	c3 := e.dialS2(t)
	s = c3.authenticate("HT-SHA-256-NONE", nil, htInitial(e.localUser(), token),
		fmt.Sprintf(`<resume xmlns='urn:xmpp:sm:3' previd='%s' h='0'/><fast xmlns='urn:xmpp:fast:0' count='2'/>`, enabled.Get("id"))+conversationsBind2)
	if !s.Is(nsSASL2Test, "success") || s.Child(nsSMTest, "failed") == nil || s.Child(nsBind2Test, "bound").Child(nsSMTest, "enabled") == nil ||
		s.ChildText(nsSASL2Test, "authorization-identifier") != full {
		t.Fatalf("after expiry: %s", s)
	}
	c3.write(`<presence/>`)
	bob.Send(t, `<message to='`+e.cfg.Upstream.JID+`' type='chat' id='c2'><body>fresh</body></message>`)
	c3.expect("fresh", hasBody("fresh"))
}

// TestFASTRevokeCommand: the admin command lists the device holding a
// FAST token and revokes it from another client; the device is
// disconnected and its token no longer logs in.
func TestFASTRevokeCommand(t *testing.T) {
	e := newEnv(t, nil, nil)
	c := e.dialS2(t)
	s := c.authenticate("PLAIN", nil, []byte("\x00"+e.localUser()+"\x00"+localPassword),
		conversationsBind2+`<request-token xmlns='urn:xmpp:fast:0' mechanism='HT-SHA-256-NONE'/>`)
	token := s.Child(nsFASTTest, "token").Get("token")
	if token == "" {
		t.Fatalf("no token: %s", s)
	}
	laptop := e.availableClient("laptop")
	// The clients list names the device from its SASL2 user agent.
	l := laptop.IQ(t, `<iq type='set' to='`+e.srv.Domain+`'><command xmlns='http://jabber.org/protocol/commands' node='`+AdminNodeClients+`' action='execute'/></iq>`)
	if !strings.Contains(l.String(), "Conversations on Pixel 7") {
		t.Fatalf("clients list lacks the user agent: %s", l)
	}
	r := laptop.IQ(t, `<iq type='set' to='`+e.srv.Domain+`'><command xmlns='http://jabber.org/protocol/commands' node='`+AdminNodeFastTokens+`' action='execute'/></iq>`)
	cmd := r.Child(NSCommands, "command")
	if cmd == nil || !strings.Contains(cmd.String(), "Conversations on Pixel 7") || !strings.Contains(cmd.String(), phoneUA) {
		t.Fatalf("list: %s", r)
	}
	r = laptop.IQ(t, `<iq type='set' to='`+e.srv.Domain+`'><command xmlns='http://jabber.org/protocol/commands' node='`+AdminNodeFastTokens+`' sessionid='`+cmd.Get("sessionid")+`' action='complete'>`+
		`<x xmlns='jabber:x:data' type='submit'><field var='revoke'><value>`+phoneUA+`</value></field></x></command></iq>`)
	if n := r.Child(NSCommands, "command"); n == nil || n.Get("status") != "completed" || !strings.Contains(n.String(), "Revoked 1 token") || !strings.Contains(n.String(), "closed 1 of its session") {
		t.Fatalf("revoke: %s", r)
	}
	se := c.expect("stream error", func(el *stanza.Element) bool { return el.Is(stanza.NSStream, "error") })
	if se.Child(stanza.NSStreams, "not-authorized") == nil {
		t.Fatalf("revoked device got %s", se)
	}
	c2 := e.dialS2(t)
	if s := c2.authenticate("HT-SHA-256-NONE", nil, htInitial(e.localUser(), token), ""); !s.Is(nsSASL2Test, "failure") {
		t.Fatalf("revoked token: %s", s)
	}
}

// htMAC is HT-SHA-256-NONE's initiator hash: HMAC-SHA-256(token, "Initiator").
func htMAC(token string) []byte {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("Initiator"))
	return m.Sum(nil)
}
