package stanza

import (
	"encoding/xml"
	"reflect"
	"strings"
	"testing"
)

func reparse(t *testing.T, s string) *Element {
	t.Helper()
	e, err := Parse(s)
	if err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	return e
}

func TestRoundTripKeepsParsedXML(t *testing.T) {
	cases := []string{
		`<message id="a1" to="r@c/n" type="groupchat" xml:lang="de"><body>hi &amp; &lt;3</body><x xmlns="urn:ext"><y a="1"/></x></message>`,
		`<message><foo:bar xmlns:foo="urn:foo" foo:attr="v"><foo:baz/>text</foo:bar></message>`,
		`<iq type="get" id="q"><query xmlns="urn:xmpp:mam:2" queryid="f"><x xmlns="jabber:x:data" type="submit"><field var="FORM_TYPE"><value>urn:xmpp:mam:2</value></field></x></query></iq>`,
		`<presence><c xmlns="http://jabber.org/protocol/caps" hash="sha-1" node="n" ver="v=="/><status>a "quoted"
line</status></presence>`,
		`<message><body>tab	and CR&#xD;kept</body><a xmlns="urn:a" xmlns:b="urn:b" b:x="1"><b:c/></a></message>`,
	}
	for _, c := range cases {
		e := reparse(t, c)
		out := e.String()
		e2 := reparse(t, out)
		if !reflect.DeepEqual(e, e2) {
			t.Errorf("round trip changed the tree\n in: %s\nout: %s", c, out)
		}
	}
}

func TestPrefixedNamespaceSurvives(t *testing.T) {
	e := reparse(t, `<message><foo:bar xmlns:foo="urn:foo" foo:attr="v"/></message>`)
	out := e.String()
	e2 := reparse(t, out)
	bar := e2.Child("urn:foo", "bar")
	if bar == nil {
		t.Fatalf("lost urn:foo bar in %s", out)
	}
	var got string
	for _, a := range bar.Attr {
		if a.Name.Space == "urn:foo" && a.Name.Local == "attr" {
			got = a.Value
		}
	}
	if got != "v" {
		t.Fatalf("namespaced attribute lost in %s", out)
	}
}

func TestWithDoesNotTouchOriginal(t *testing.T) {
	e := reparse(t, `<message to="a@b/c" id="1"><body>x</body></message>`)
	c := e.With("to", "a@b/d", "from", "")
	if e.To() != "a@b/c" || c.To() != "a@b/d" || c.ID() != "1" {
		t.Fatalf("With changed the original or lost attributes: %s / %s", e, c)
	}
}

func TestDepthLimit(t *testing.T) {
	d := xml.NewDecoder(strings.NewReader(strings.Repeat("<a>", 50) + strings.Repeat("</a>", 50)))
	tok, _ := d.Token()
	if _, err := ReadElement(d, tok.(xml.StartElement), 10); err != ErrTooDeep {
		t.Fatalf("want ErrTooDeep, got %v", err)
	}
}

// ReadLimited skips a stanza past its limits to its end, so the next one
// reads as if nothing happened.
func TestReadLimitedSkipsToTheNextStanza(t *testing.T) {
	deep := `<message id="d" from="x@y"><body>hi</body>` + strings.Repeat("<a>", 50) + strings.Repeat("</a>", 50) + `</message>`
	wide := `<message id="w">` + strings.Repeat("<b>text</b>", 100) + `</message>`
	d := xml.NewDecoder(strings.NewReader(deep + wide + `<message id="next"><body>ok</body></message>`))
	d.DefaultSpace = NSClient
	next := func() xml.StartElement {
		tok, err := d.Token()
		if err != nil {
			t.Fatal(err)
		}
		return tok.(xml.StartElement)
	}
	head, err := ReadLimited(d, next(), 10, nil)
	if err != ErrTooDeep || head.ID() != "d" || head.From() != "x@y" || len(head.Children) != 0 {
		t.Fatalf("deep: got %v, %v", head, err)
	}
	n := 0
	head, err = ReadLimited(d, next(), 10, func() bool { n++; return n > 20 })
	if err != ErrTooLarge || head.ID() != "w" || len(head.Children) != 0 {
		t.Fatalf("large: got %v, %v", head, err)
	}
	el, err := ReadLimited(d, next(), 10, func() bool { return false })
	if err != nil || el.ID() != "next" || el.ChildText(NSClient, "body") != "ok" {
		t.Fatalf("next: got %v, %v", el, err)
	}
}

func TestEscapingOfGeneratedText(t *testing.T) {
	e := New(NSClient, "message", "to", `a"b`).Append(New(NSClient, "body").AppendText("x\x00y<"))
	out := e.String()
	if _, err := Parse(out); err != nil {
		t.Fatalf("generated invalid XML %q: %v", out, err)
	}
}

func TestErrorReply(t *testing.T) {
	req := reparse(t, `<iq type="get" id="7" from="a@b/c" to="b"><query xmlns="urn:x"/></iq>`)
	r := ErrorReply(req, ErrCancel, "service-unavailable", "")
	if r.ID() != "7" || r.To() != "a@b/c" || r.From() != "b" || ErrorCondition(r) != "service-unavailable" {
		t.Fatalf("bad error reply %s", r)
	}
}

func TestFreezeMatchesPlainEncoding(t *testing.T) {
	e := reparse(t, `<message to="a@b/c"><body>x &amp; y</body><foo:bar xmlns:foo="urn:foo" foo:a="1"><foo:baz/></foo:bar></message>`)
	want := e.With("to", "a@b/d").String()
	e.Freeze()
	if got := e.With("to", "a@b/d").String(); got != want {
		t.Fatalf("frozen copy differs:\n got %s\nwant %s", got, want)
	}
	e.Append(New(NSClient, "subject"))
	if got := e.String(); !strings.Contains(got, "<subject/>") {
		t.Fatalf("Append after Freeze was ignored: %s", got)
	}
}

func TestInvalidNamesRefused(t *testing.T) {
	for _, s := range []string{`<message><a:0 xmlns:a="urn:a"/></message>`, `<message><x xmlns:a="urn:a" a:1="v"/></message>`} {
		if _, err := Parse(s); err == nil {
			t.Errorf("accepted %s", s)
		}
	}
}
