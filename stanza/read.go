package stanza

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
)

// ErrTooDeep is returned by Read when an element nests deeper than allowed.
var ErrTooDeep = errors.New("stanza: element nesting too deep")

// ReadElement reads the rest of the element that start opens and returns it
// as a tree. maxDepth bounds nesting (the stanza itself is depth 1); 0 means
// no bound. Comments, processing instructions and directives are refused:
// RFC 6120 §11.1 restricts them.
func ReadElement(r xml.TokenReader, start xml.StartElement, maxDepth int) (*Element, error) {
	return readElement(r, start, maxDepth, nil, false)
}

// validName reports whether s is an XML NCName (Namespaces in XML §3):
// encoding/xml accepts names such as "0" in <a:0/>, which re-serialised
// would be invalid XML on a stream shared with others.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_' || unicode.IsLetter(r):
		case i > 0 && (r == '-' || r == '.' || unicode.IsDigit(r) || unicode.In(r, unicode.Mn, unicode.Mc, unicode.Nd, unicode.Pc)):
		case r == 0xB7:
		default:
			return false
		}
	}
	return true
}

func fromStart(t xml.StartElement) (*Element, error) {
	if !validName(t.Name.Local) {
		return nil, &xml.SyntaxError{Msg: "invalid element name " + strconv.Quote(t.Name.Local)}
	}
	for _, a := range t.Attr {
		if !validName(a.Name.Local) && !(a.Name.Space == "" && a.Name.Local == "xmlns") {
			return nil, &xml.SyntaxError{Msg: "invalid attribute name " + strconv.Quote(a.Name.Local)}
		}
	}
	el := &Element{Name: t.Name}
	if len(t.Attr) > 0 {
		el.Attr = make([]xml.Attr, 0, len(t.Attr))
		for _, a := range t.Attr {
			if a.Name.Space == "" && a.Name.Local == "xmlns" {
				continue // derived from Name.Space when encoding
			}
			el.Attr = append(el.Attr, a)
		}
		if len(el.Attr) == 0 {
			el.Attr = nil
		}
	}
	return el, nil
}

// Parse parses one element from a string. Its top-level namespace defaults to
// NSClient, as on a client stream. It is meant for tests and fixed templates.
func Parse(s string) (*Element, error) {
	d := xml.NewDecoder(strings.NewReader(s))
	d.DefaultSpace = NSClient
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			return ReadElement(d, t, 0)
		case xml.CharData:
			if strings.TrimSpace(string(t)) != "" {
				return nil, errors.New("stanza: text outside an element")
			}
		}
	}
}

// MustParse is Parse that panics; only for constant templates and tests.
func MustParse(s string) *Element {
	e, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return e
}

// ErrTooLarge is returned by ReadLimited when a stanza outgrows its byte
// budget.
var ErrTooLarge = errors.New("stanza: element too large")

// ReadLimited reads an element like ReadElement, for a stream that must
// survive one bad stanza. Once the element nests deeper than maxDepth (0:
// no bound) or tooBig reports true, it stops building the tree, reads on to
// the element's end tag, and returns the element's start tag alone (no
// children) with ErrTooDeep or ErrTooLarge. Any other error means the
// stream itself is broken.
func ReadLimited(r xml.TokenReader, start xml.StartElement, maxDepth int, tooBig func() bool) (*Element, error) {
	return readElement(r, start, maxDepth, tooBig, true)
}

// readElement is ReadElement and ReadLimited: a limit ends the read at once,
// or, with skip, after the element's end tag.
func readElement(r xml.TokenReader, start xml.StartElement, maxDepth int, tooBig func() bool, skip bool) (*Element, error) {
	root, err := fromStart(start)
	if err != nil {
		return nil, err
	}
	stack := []*Element{root}
	var over error // set once the element is being skipped
	depth := 1     // open elements, counted also while skipping
	for depth > 0 {
		tok, err := r.Token()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if over == nil && tooBig != nil && tooBig() {
			over = ErrTooLarge
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if over == nil && maxDepth > 0 && depth > maxDepth {
				over = ErrTooDeep
			}
			if over != nil {
				if !skip {
					return nil, over
				}
				continue
			}
			el, err := fromStart(t)
			if err != nil {
				return nil, err
			}
			top := stack[len(stack)-1]
			top.Children = append(top.Children, Node{El: el})
			stack = append(stack, el)
		case xml.EndElement:
			depth--
			if over == nil {
				stack = stack[:len(stack)-1]
			}
		case xml.CharData:
			if over != nil || len(t) == 0 {
				continue
			}
			top := stack[len(stack)-1]
			n := len(top.Children)
			if n > 0 && top.Children[n-1].El == nil {
				top.Children[n-1].Text += string(t)
			} else {
				top.Children = append(top.Children, Node{Text: string(t)})
			}
		default:
			return nil, fmt.Errorf("stanza: restricted XML (%T) inside <%s/>", tok, root.Name.Local)
		}
	}
	if over != nil {
		root.Children = nil
		return root, over
	}
	return root, nil
}
