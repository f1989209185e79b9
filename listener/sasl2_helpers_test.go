package listener

import (
	"crypto/tls"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"strings"
	"testing"

	"mellium.im/sasl"

	"xmppbouncer/stanza"
)

// s2conn is a raw SASL2 client over direct TLS, writing its requests the
// way Conversations does (Namespace.java, Bind2.java, XmppConnection.java):
// <authenticate mechanism><initial-response/><user-agent id><software/>
// <device/></user-agent><bind xmlns='urn:xmpp:bind:0'><tag/>inline
// enables</bind><request-token/> or <fast/></authenticate>.
type s2conn struct {
	*rawConn
	features *stanza.Element
}

func dialS2(t *testing.T, srv *Server) *s2conn {
	t.Helper()
	return dialS2TLS(t, srv, 0)
}

// dialS2TLS connects with direct TLS, at most maxVersion (0: any).
func dialS2TLS(t *testing.T, srv *Server, maxVersion uint16) *s2conn {
	t.Helper()
	r := dialRaw(t, srv.DirectTLSAddr().String())
	tc := tls.Client(r.Conn, &tls.Config{InsecureSkipVerify: true, ServerName: testDomain, MaxVersion: maxVersion})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	r.Conn = tc
	r.d = xml.NewDecoder(tc)
	r.send(t, header(testDomain))
	f := r.mustNext(t)
	if f.Child(nsSASL2, "authentication") == nil {
		t.Fatalf("no SASL2 in features: %s", f)
	}
	return &s2conn{rawConn: r, features: f}
}

func (c *s2conn) tlsState() tls.ConnectionState {
	return c.Conn.(*tls.Conn).ConnectionState()
}

// auth is the parts of an <authenticate/>.
type auth struct {
	mech    string
	initial []byte // nil: no <initial-response/>
	uaID    string
	extra   string // inline requests: <bind/>, <resume/>, <request-token/>, <fast/>
}

func (a auth) xml() string {
	var b strings.Builder
	fmt.Fprintf(&b, `<authenticate xmlns='urn:xmpp:sasl:2' mechanism='%s'>`, a.mech)
	if a.initial != nil {
		fmt.Fprintf(&b, `<initial-response>%s</initial-response>`, base64.StdEncoding.EncodeToString(a.initial))
	}
	if a.uaID != "" {
		fmt.Fprintf(&b, `<user-agent id='%s'><software>Conversations</software><device>Pixel 7</device></user-agent>`, a.uaID)
	}
	b.WriteString(a.extra)
	b.WriteString(`</authenticate>`)
	return b.String()
}

func plainIR(user, pw string) []byte { return []byte("\x00" + user + "\x00" + pw) }

// bind2XML is the Bind2 request Conversations sends, with every inline
// feature we offer.
const bind2XML = `<bind xmlns='urn:xmpp:bind:0'><tag>Conversations</tag>` +
	`<enable xmlns='urn:xmpp:carbons:2'/><enable xmlns='urn:xmpp:sm:3' resume='true'/><inactive xmlns='urn:xmpp:csi:0'/></bind>`

// scramLogin runs a SCRAM exchange over SASL2 with mellium's client and
// returns the server's final element (success or failure). The server
// signature in <additional-data/> is checked.
func (c *s2conn) scramLogin(t *testing.T, mech sasl.Mechanism, pw string, uaID, extra string, opts ...sasl.Option) *stanza.Element {
	t.Helper()
	opts = append([]sasl.Option{sasl.Credentials(func() ([]byte, []byte, []byte) { return []byte(testUser), []byte(pw), nil })}, opts...)
	cl := sasl.NewClient(mech, opts...)
	_, first, err := cl.Step(nil)
	if err != nil {
		t.Fatal(err)
	}
	c.send(t, auth{mech: mech.Name, initial: first, uaID: uaID, extra: extra}.xml())
	for {
		el := c.mustNext(t)
		switch {
		case el.Is(nsSASL2, "challenge"):
			ch, _ := base64.StdEncoding.DecodeString(el.Text())
			_, resp, err := cl.Step(ch)
			if err != nil {
				t.Fatalf("client step: %v", err)
			}
			c.send(t, `<response xmlns='urn:xmpp:sasl:2'>`+base64.StdEncoding.EncodeToString(resp)+`</response>`)
		case el.Is(nsSASL2, "success"):
			fin, _ := base64.StdEncoding.DecodeString(el.ChildText(nsSASL2, "additional-data"))
			if _, _, err := cl.Step(fin); err != nil {
				t.Fatalf("server signature refused by the client: %v", err)
			}
			return el
		default:
			return el
		}
	}
}
