package stanza

import (
	"encoding/xml"
	"testing"

	"mellium.im/xmlstream"
	"mellium.im/xmpp/commands"
	"mellium.im/xmpp/form"
	"mellium.im/xmpp/paging"
)

// mellium's readers leave children's namespaces empty; FromTokens gives
// them their parent's, and the outermost element ns when it has none.
func TestFromTokens(t *testing.T) {
	cases := []struct {
		r    xml.TokenReader
		ns   string
		want string
	}{
		{(&paging.RequestNext{Max: 50, After: "a<b"}).TokenReader(), NSClient,
			`<set xmlns="http://jabber.org/protocol/rsm"><max>50</max><after>a&lt;b</after></set>`},
		{commands.Note{Type: commands.NoteWarn, Value: "careful"}.TokenReader(), commands.NS,
			`<note xmlns="http://jabber.org/protocol/commands" type="warn">careful</note>`},
		{xmlstream.Wrap(xmlstream.MultiReader(
			xmlstream.Wrap(nil, xml.StartElement{Name: xml.Name{Space: "urn:other", Local: "y"}}),
			xmlstream.Wrap(xmlstream.Token(xml.CharData("t")), xml.StartElement{Name: xml.Name{Local: "z"}}),
		), xml.StartElement{Name: xml.Name{Local: "x"}}), "urn:outer",
			`<x xmlns="urn:outer"><y xmlns="urn:other"/><z>t</z></x>`},
	}
	for _, c := range cases {
		el, err := FromTokens(c.r, c.ns)
		if err != nil {
			t.Fatal(err)
		}
		if got := el.String(); got != c.want {
			t.Errorf("got  %s\nwant %s", got, c.want)
		}
	}
	sub, _ := form.New(form.Hidden("FORM_TYPE", form.Value("urn:xmpp:mam:2"))).Submit()
	el, err := FromTokens(sub, NSClient)
	if err != nil {
		t.Fatal(err)
	}
	if f := el.Child(NSDataForm, "field"); f == nil || f.ChildText(NSDataForm, "value") != "urn:xmpp:mam:2" {
		t.Errorf("form field not in jabber:x:data: %s", el)
	}
	if _, err := FromTokens(xmlstream.Token(xml.CharData("text")), NSClient); err == nil {
		t.Error("text alone: no error")
	}
	if _, err := FromTokens(xmlstream.MultiReader(), NSClient); err == nil {
		t.Error("no tokens: no error")
	}
}
