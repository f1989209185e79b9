package stanza

import (
	"strconv"
	"unicode/utf8"
)

const nsXMLAttr = "http://www.w3.org/XML/1998/namespace"

// scope is the stack of prefix declarations in force while encoding.
type scope []prefixDecl

type prefixDecl struct{ prefix, uri string }

func (s scope) prefixFor(uri string) (string, bool) {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i].uri == uri {
			return s[i].prefix, true
		}
	}
	return "", false
}

// AppendXML appends the serialisation of e to b, as it appears inside an
// element whose default namespace is parentNS. On a client stream parentNS
// is NSClient, so stanzas in jabber:client carry no xmlns.
func (e *Element) AppendXML(b []byte, parentNS string) []byte {
	var sc scope
	return e.appendXML(b, parentNS, &sc)
}

// String returns the element serialised as if it stood on a client stream.
func (e *Element) String() string {
	return string(e.AppendXML(nil, NSClient))
}

func (e *Element) appendXML(b []byte, parentNS string, sc *scope) []byte {
	mark := len(*sc)
	b = append(b, '<')
	b = append(b, e.Name.Local...)
	if e.Name.Space != parentNS {
		b = append(b, ` xmlns="`...)
		b = appendEscaped(b, e.Name.Space, true)
		b = append(b, '"')
	}
	// Declarations first, so that namespaced attributes can use them.
	for _, a := range e.Attr {
		if a.Name.Space == "xmlns" {
			*sc = append(*sc, prefixDecl{a.Name.Local, a.Value})
			b = append(b, " xmlns:"...)
			b = append(b, a.Name.Local...)
			b = append(b, `="`...)
			b = appendEscaped(b, a.Value, true)
			b = append(b, '"')
		}
	}
	for _, a := range e.Attr {
		switch {
		case a.Name.Space == "xmlns":
			continue
		case a.Name.Space == "" && a.Name.Local == "xmlns":
			continue // the default namespace is derived from Name.Space
		case a.Name.Space == "":
			b = append(b, ' ')
		case a.Name.Space == nsXMLAttr || a.Name.Space == "xml":
			b = append(b, " xml:"...)
		default:
			p, ok := sc.prefixFor(a.Name.Space)
			if !ok {
				p = "ns" + strconv.Itoa(len(*sc))
				*sc = append(*sc, prefixDecl{p, a.Name.Space})
				b = append(b, " xmlns:"...)
				b = append(b, p...)
				b = append(b, `="`...)
				b = appendEscaped(b, a.Name.Space, true)
				b = append(b, '"')
			}
			b = append(b, ' ')
			b = append(b, p...)
			b = append(b, ':')
		}
		b = append(b, a.Name.Local...)
		b = append(b, `="`...)
		b = appendEscaped(b, a.Value, true)
		b = append(b, '"')
	}
	if len(e.Children) == 0 {
		b = append(b, "/>"...)
	} else {
		b = append(b, '>')
		if e.inner != nil {
			b = append(b, e.inner...)
			goto end
		}
		for _, n := range e.Children {
			if n.El != nil {
				b = n.El.appendXML(b, e.Name.Space, sc)
			} else {
				b = appendEscaped(b, n.Text, false)
			}
		}
	end:
		b = append(b, "</"...)
		b = append(b, e.Name.Local...)
		b = append(b, '>')
	}
	*sc = (*sc)[:mark]
	return b
}

// escText and escAttr mark the ASCII bytes that need escaping (or
// replacing) in text and attribute content; bytes >= 0x80 are checked as
// UTF-8 separately.
var escText, escAttr [256]bool

func init() {
	for c := 0; c < 0x20; c++ {
		escText[c], escAttr[c] = true, true
	}
	escText['\n'], escText['\t'] = false, false
	for _, c := range "&<>\r" {
		escText[c], escAttr[c] = true, true
	}
	escAttr['"'] = true
	for c := 0x80; c < 0x100; c++ {
		escText[c], escAttr[c] = true, true
	}
}

// appendEscaped escapes s for XML text or attribute content. Characters that
// XML 1.0 does not allow are replaced by U+FFFD, so whatever we generate
// stays well-formed.
func appendEscaped(b []byte, s string, attr bool) []byte {
	tbl := &escText
	if attr {
		tbl = &escAttr
	}
	last := 0
	for i := 0; i < len(s); {
		c := s[i]
		if !tbl[c] {
			i++
			continue
		}
		var esc string
		width := 1
		switch {
		case c == '&':
			esc = "&amp;"
		case c == '<':
			esc = "&lt;"
		case c == '>':
			esc = "&gt;"
		case c == '"':
			esc = "&quot;"
		case c == '\r':
			esc = "&#xD;"
		case c == '\n':
			esc = "&#xA;"
		case c == '\t':
			esc = "&#x9;"
		case c < 0x20:
			esc = "\uFFFD"
		default:
			r, w := utf8.DecodeRuneInString(s[i:])
			width = w
			if (r == utf8.RuneError && w == 1) || r == 0xFFFE || r == 0xFFFF {
				esc = "\uFFFD"
			}
		}
		if esc == "" {
			i += width
			continue
		}
		b = append(b, s[last:i]...)
		b = append(b, esc...)
		i += width
		last = i
	}
	return append(b, s[last:]...)
}
