package stanza

import (
	"encoding/xml"
	"errors"
	"io"
	"strings"
)

// FromTokens builds the element that r produces, such as the TokenReader of
// a mellium.im/xmpp value (a form.Data, a paging.RequestNext, a
// commands.Note). Those readers leave a child's namespace empty to mean its
// parent's, as xml.Encoder writes them; FromTokens gives such names the
// enclosing element's namespace, and ns to the outermost one when it has
// none. The tokens go straight into the tree: nothing is encoded and
// parsed again, so xml.Encoder's handling of prefixes never comes into it.
func FromTokens(r xml.TokenReader, ns string) (*Element, error) {
	in := &inheritNS{r: r, spaces: []string{ns}}
	for {
		tok, err := in.Token()
		if err == io.EOF {
			return nil, errors.New("stanza: no element in the tokens")
		}
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			return ReadElement(in, t, 0)
		case xml.CharData:
			if strings.TrimSpace(string(t)) != "" {
				return nil, errors.New("stanza: text outside an element")
			}
		}
	}
}

// inheritNS fills in empty element namespaces from the enclosing element.
type inheritNS struct {
	r      xml.TokenReader
	spaces []string // the namespace of each open element, after ns
}

func (in *inheritNS) Token() (xml.Token, error) {
	tok, err := in.r.Token()
	if tok == nil {
		if err == nil {
			err = io.EOF
		}
		return nil, err
	}
	top := in.spaces[len(in.spaces)-1]
	switch t := tok.(type) {
	case xml.StartElement:
		if t.Name.Space == "" {
			t.Name.Space = top
		}
		in.spaces = append(in.spaces, t.Name.Space)
		return t, nil
	case xml.EndElement:
		if t.Name.Space == "" {
			t.Name.Space = top
		}
		if len(in.spaces) > 1 {
			in.spaces = in.spaces[:len(in.spaces)-1]
		}
		return t, nil
	}
	return tok, nil
}

// MustFromTokens is FromTokens for readers whose shape is fixed by code
// (a mellium value built in our source), where an error is a bug: it
// panics. Like MustParse, never for what came from the network.
func MustFromTokens(r xml.TokenReader, ns string) *Element {
	e, err := FromTokens(r, ns)
	if err != nil {
		panic(err)
	}
	return e
}
