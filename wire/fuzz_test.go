package wire

import (
	"bytes"
	"context"
	"encoding/xml"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stream"

	"xmppbouncer/stanza"
)

const fuzzHeader = `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' to='example.org'>`

// FuzzReadStanza feeds arbitrary bytes as the body of a client stream
// through the path a local client's stream takes after negotiation: a
// mellium session over a Meter, read by Conn.Read. Nothing may panic, and
// every stanza that comes out must serialise to XML that parses back to the
// same tree.
func FuzzReadStanza(f *testing.F) {
	for _, s := range []string{
		`<message to='room@muc.example.org' type='groupchat' id='m1'><body>hi &amp; &lt;3</body><origin-id xmlns='urn:xmpp:sid:0' id='o1'/></message>`,
		`<presence to='room@muc.example.org/nick'><x xmlns='http://jabber.org/protocol/muc'><history maxchars='0'/></x><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://gajim.org' ver='abc='/></presence>`,
		`<iq type='set' id='q1'><query xmlns='urn:xmpp:mam:2' queryid='f27'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field><field var='start'><value>2026-01-01T00:00:00Z</value></field></x><set xmlns='http://jabber.org/protocol/rsm'><max>50</max><after>xyz</after></set></query></iq>`,
		`<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq> <iq type='set' id='s'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>`,
		`<message xml:lang='de'><foo:bar xmlns:foo='urn:foo' foo:attr='v'><foo:baz/>text<![CDATA[<raw>]]></foo:bar></message>`,
		`<message><body>tab	and CR&#xD;&#x1F600;</body></message></stream:stream>`,
		`<active xmlns='urn:xmpp:csi:0'/>`,
		`<message A0000=''><foo:bar A00000000='0'A000=''><A000/><![CDATA[]]></foo:bar></message>`,
		// Inputs that grow when re-serialised for upstream.
		`<message><body>>>>>>>>>]]></body></message>`,
		"<message><x xmlns='urn:x' a='\n\n\n\t\t\t\"'/></message>",
		`<message xmlns:p='urn:a-rather-long-namespace-name'><p:a/><p:a/><p:a p:q='1'/></message>`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		start := time.Now()
		els := readStream(t, body)
		if d := time.Since(start); d > time.Second {
			t.Fatalf("reading %d bytes took %v", len(body), d)
		}
		for i, el := range els {
			out := el.AppendXML(nil, stanza.NSClient)
			if i < 4 {
				// What a Conn's writer puts on the wire for el is exactly
				// what the listener measures against the upstream limit.
				if w := written(t, el); !bytes.Equal(w, out) {
					t.Fatalf("the writer sent other bytes than AppendXML\nAppendXML: %s\nwriter:    %s", out, w)
				}
			}
			back, err := stanza.Parse(string(out))
			if err != nil {
				t.Fatalf("serialised stanza does not parse: %v\ninput:  %q\noutput: %s", err, body, out)
			}
			if !sameTree(el, back) {
				t.Fatalf("round trip changed the tree\ninput:  %q\noutput: %s\nback:   %s", body, out, back.AppendXML(nil, stanza.NSClient))
			}
		}
	})
}

// written returns the bytes a Conn's writer sends for el.
func written(t *testing.T, el *stanza.Element) []byte {
	mc := &memConn{r: strings.NewReader(fuzzHeader), capture: true}
	meter := NewMeter(mc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sess, err := xmpp.NewSession(ctx, jid.MustParse("example.org"), jid.MustParse("alice@example.org"), meter, xmpp.Received, skipHeader)
	if err != nil {
		t.Fatalf("session over the fixed header: %v", err)
	}
	conn := New(sess, meter, Options{QueueLen: 1})
	if !conn.Send(el) {
		t.Fatal("Send on an empty queue failed")
	}
	conn.Close(nil)
	<-conn.Done()
	return bytes.TrimSuffix(mc.out.Bytes(), []byte("</stream:stream>"))
}

// readStream runs body through Conn.Read and returns the stanzas handled.
func readStream(t *testing.T, body []byte) []*stanza.Element {
	mc := &memConn{r: io.MultiReader(strings.NewReader(fuzzHeader), bytes.NewReader(body))}
	meter := NewMeter(mc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sess, err := xmpp.NewSession(ctx, jid.MustParse("example.org"), jid.MustParse("alice@example.org"), meter, xmpp.Received, skipHeader)
	if err != nil {
		t.Fatalf("session over the fixed header: %v", err)
	}
	conn := New(sess, meter, Options{MaxStanzaBytes: 1 << 20, MaxDepth: 32, QueueLen: 4})
	var els []*stanza.Element
	_ = conn.Read(func(el *stanza.Element) { els = append(els, el) })
	conn.Close(nil)
	<-conn.Done()
	return els
}

// skipHeader is a Negotiator that only consumes the client's stream header,
// leaving the decoder inside the stream as real negotiation does.
func skipHeader(ctx context.Context, in, out *stream.Info, s *xmpp.Session, _ interface{}) (xmpp.SessionState, io.ReadWriter, interface{}, error) {
	r := s.TokenReader()
	defer r.Close()
	for {
		tok, err := r.Token()
		if err != nil {
			return 0, nil, nil, err
		}
		if st, ok := tok.(xml.StartElement); ok && st.Name.Local == "stream" {
			out.XMLNS = stanza.NSClient
			return xmpp.Ready, nil, nil, nil
		}
	}
}

// sameTree compares what XML means: names, attributes other than namespace
// declarations (the serialiser derives those), and children.
func sameTree(a, b *stanza.Element) bool {
	if a.Name != b.Name {
		return false
	}
	aa, ba := attrsNoDecl(a.Attr), attrsNoDecl(b.Attr)
	if len(aa) != len(ba) {
		return false
	}
	for i := range aa {
		if aa[i] != ba[i] {
			return false
		}
	}
	ac, bc := nonEmpty(a.Children), nonEmpty(b.Children)
	if len(ac) != len(bc) {
		return false
	}
	for i, c := range ac {
		d := bc[i]
		if (c.El == nil) != (d.El == nil) {
			return false
		}
		if c.El == nil {
			if c.Text != d.Text {
				return false
			}
		} else if !sameTree(c.El, d.El) {
			return false
		}
	}
	return true
}

// nonEmpty drops empty text nodes: an empty CDATA section yields one, and
// it serialises to nothing.
func nonEmpty(children []stanza.Node) []stanza.Node {
	var out []stanza.Node
	for _, n := range children {
		if n.El != nil || n.Text != "" {
			out = append(out, n)
		}
	}
	return out
}

func attrsNoDecl(attrs []xml.Attr) []xml.Attr {
	var out []xml.Attr
	for _, a := range attrs {
		if a.Name.Space == "xmlns" || (a.Name.Space == "" && a.Name.Local == "xmlns") {
			continue
		}
		if a.Name.Space == "xml" {
			a.Name.Space = "http://www.w3.org/XML/1998/namespace"
		}
		out = append(out, a)
	}
	return out
}

// memConn is a net.Conn that reads a fixed input and discards writes, or
// keeps them in out when capture is set.
type memConn struct {
	r       io.Reader
	mu      sync.Mutex
	closed  bool
	capture bool
	out     bytes.Buffer
}

func (c *memConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return 0, net.ErrClosed
	}
	return c.r.Read(p)
}

func (c *memConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.capture {
		c.out.Write(p)
	}
	return len(p), nil
}
func (c *memConn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	return nil
}
func (c *memConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

// TestFuzzHarnessReadsStanzas keeps FuzzReadStanza honest: its harness must
// really deliver stanzas, in order, and stop at the end of the stream.
func TestFuzzHarnessReadsStanzas(t *testing.T) {
	els := readStream(t, []byte(`<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq> <message id='m'><body>x</body></message></stream:stream><message id='after'/>`))
	if len(els) != 2 || els[0].ID() != "p" || els[1].ID() != "m" || els[0].Child("urn:xmpp:ping", "ping") == nil {
		t.Fatalf("harness read %v", els)
	}
}
