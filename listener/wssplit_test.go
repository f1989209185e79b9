package listener

import (
	"strings"
	"testing"

	"xmppbouncer/internal/testclient"
)

// The splitter turns the server's byte stream into RFC 7395 frames however
// the writes are cut: each frame parses on its own, stanzas carry
// jabber:client, stream elements their prefix, and the header and end tag
// become <open/> and <close/>.
func TestWSSplitterFrames(t *testing.T) {
	stream := string(streamHeader("bouncer.test", "alice@bouncer.test")) +
		`<stream:features><mechanisms xmlns="urn:ietf:params:xml:ns:xmpp-sasl"><mechanism>PLAIN</mechanism></mechanisms></stream:features>` +
		`<success xmlns="urn:ietf:params:xml:ns:xmpp-sasl"/>` +
		` ` + // a whitespace keepalive
		`<message to="a@b/c" id="x&gt;'y"><body>a &lt;b&gt; "c" 'd' /></body><x xmlns="urn:example" a='"/>'/></message>` +
		`<presence/>` +
		`<stream:error><conflict xmlns="urn:ietf:params:xml:ns:xmpp-streams"/></stream:error></stream:stream>`
	want := []struct {
		kind      frameKind
		ns, local string
	}{
		{frameElement, nsFraming, "open"},
		{frameElement, "http://etherx.jabber.org/streams", "features"},
		{frameSASLSuccess, "urn:ietf:params:xml:ns:xmpp-sasl", "success"},
		{frameKeepAlive, "", ""},
		{frameElement, "jabber:client", "message"},
		{frameElement, "jabber:client", "presence"},
		{frameElement, "http://etherx.jabber.org/streams", "error"},
		{frameElement, nsFraming, "close"},
	}
	for _, chunk := range []int{1, 2, 3, 7, 64, len(stream)} {
		var s splitter
		var got []string
		var kinds []frameKind
		for i := 0; i < len(stream); i += chunk {
			s.feed([]byte(stream[i:min(i+chunk, len(stream))]), func(k frameKind, b []byte) {
				kinds = append(kinds, k)
				got = append(got, string(b))
			})
		}
		if len(got) != len(want) {
			t.Fatalf("chunk %d: %d frames, want %d:\n%s", chunk, len(got), len(want), strings.Join(got, "\n"))
		}
		for i, w := range want {
			if kinds[i] != w.kind {
				t.Fatalf("chunk %d: frame %d kind %d, want %d: %s", chunk, i, kinds[i], w.kind, got[i])
			}
			if w.kind == frameKeepAlive {
				continue
			}
			el, err := testclient.ParseFrame([]byte(got[i]))
			if err != nil || el.Name.Space != w.ns || el.Name.Local != w.local {
				t.Fatalf("chunk %d: frame %d %q: %v (want {%s}%s)", chunk, i, got[i], err, w.ns, w.local)
			}
		}
		if !strings.Contains(got[0], "from='bouncer.test'") || !strings.Contains(got[0], "version='1.0'") || !strings.Contains(got[0], "id='") {
			t.Fatalf("open frame %q", got[0])
		}
		msg, _ := testclient.ParseFrame([]byte(got[4]))
		if msg.ID() != `x>'y` || msg.ChildText("jabber:client", "body") != `a <b> "c" 'd' />` {
			t.Fatalf("message changed: %s", got[4])
		}
	}
}

// checkFrame never panics, and what it accepts is one element.
func FuzzWSCheckFrame(f *testing.F) {
	for _, s := range []string{
		`<message xmlns='jabber:client'><body>x</body></message>`,
		`<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='a' version='1.0'/>`,
		`<a/><b/>`, `<a>`, `text`, `<!-- c --><a/>`, `<?xml version='1.0'?><a/>`, `<p:a xmlns:p='x'/>`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		el, err := checkFrame(b)
		if err == nil && el == nil {
			t.Fatal("accepted without an element")
		}
		if err == nil {
			if _, perr := testclient.ParseFrame(b); perr != nil && strings.Contains(perr.Error(), "more than one element") {
				t.Fatalf("accepted two elements: %q", b)
			}
		}
	})
}
