// Package stanza holds the element tree that every part of xmppbouncer
// passes around, plus its parser, serialiser, namespaces and small helpers.
//
// An Element keeps names as (namespace URI, local name) pairs, the way
// encoding/xml resolves them, and keeps every attribute and child in order.
// Namespace declarations are not stored: the serialiser derives them, which
// sidesteps encoding/xml's Encoder mangling prefixed declarations. The result
// is the same parsed XML, which is what XMPP servers compare (they
// re-serialise anyway).
//
// Elements are shared between goroutines once sent, so treat a sent element
// as immutable: use ShallowCopy/With to change the top-level attributes of a
// copy, and DeepCopy before editing children.
package stanza

import (
	"encoding/xml"
)

// Element is one XML element with its attributes and children in order.
type Element struct {
	Name     xml.Name
	Attr     []xml.Attr
	Children []Node

	// inner caches the serialised children (see Freeze). Only With copies
	// it, because only With is guaranteed to leave the children alone.
	inner []byte
}

// Node is one child of an Element: an element or character data.
type Node struct {
	El   *Element // nil for character data
	Text string
}

// New returns an element with the given namespace and local name, and
// attributes given as name/value pairs.
func New(space, local string, attrs ...string) *Element {
	e := &Element{Name: xml.Name{Space: space, Local: local}}
	if len(attrs) > 0 {
		e.Attr = make([]xml.Attr, 0, len(attrs)/2)
		for i := 0; i+1 < len(attrs); i += 2 {
			if attrs[i+1] != "" {
				e.Attr = append(e.Attr, xml.Attr{Name: xml.Name{Local: attrs[i]}, Value: attrs[i+1]})
			}
		}
	}
	return e
}

// Is reports whether e has the given namespace and local name.
func (e *Element) Is(space, local string) bool {
	return e != nil && e.Name.Local == local && e.Name.Space == space
}

// Get returns the value of the un-namespaced attribute local, or "" (also
// for a nil element, so lookups can be chained through Child).
func (e *Element) Get(local string) string {
	if e == nil {
		return ""
	}
	for _, a := range e.Attr {
		if a.Name.Local == local && a.Name.Space == "" {
			return a.Value
		}
	}
	return ""
}

// Has reports whether the un-namespaced attribute local is present.
func (e *Element) Has(local string) bool {
	for _, a := range e.Attr {
		if a.Name.Local == local && a.Name.Space == "" {
			return true
		}
	}
	return false
}

// Freeze serialises e's children once, so that the copies made from it
// with With (one per recipient of a fan-out) each serialise only their own
// start tag. Call it before e is shared; e's children must not change
// afterwards.
func (e *Element) Freeze() {
	if e.inner != nil || len(e.Children) == 0 {
		return
	}
	var sc scope
	for _, a := range e.Attr {
		if a.Name.Space == "xmlns" {
			sc = append(sc, prefixDecl{a.Name.Local, a.Value})
		}
	}
	var b []byte
	for _, n := range e.Children {
		if n.El != nil {
			b = n.El.appendXML(b, e.Name.Space, &sc)
		} else {
			b = appendEscaped(b, n.Text, false)
		}
	}
	e.inner = b
}

// Set sets (or with value "" removes) the un-namespaced attribute local in
// place and returns e. Only use it on elements not yet shared.
func (e *Element) Set(local, value string) *Element {
	for i, a := range e.Attr {
		if a.Name.Local == local && a.Name.Space == "" {
			if value == "" {
				e.Attr = append(e.Attr[:i:i], e.Attr[i+1:]...)
			} else {
				e.Attr[i].Value = value
			}
			return e
		}
	}
	if value != "" {
		e.Attr = append(e.Attr, xml.Attr{Name: xml.Name{Local: local}, Value: value})
	}
	return e
}

// ShallowCopy returns a copy of e with its own attribute slice; the children
// are shared.
func (e *Element) ShallowCopy() *Element {
	c := &Element{Name: e.Name, Children: e.Children}
	c.Attr = make([]xml.Attr, len(e.Attr), len(e.Attr)+1)
	copy(c.Attr, e.Attr)
	return c
}

// With returns a shallow copy of e with attributes set as name/value pairs;
// an empty value removes the attribute. Pass only plain attributes such as
// to, from, id and type, never namespace declarations.
func (e *Element) With(attrs ...string) *Element {
	c := e.ShallowCopy()
	c.inner = e.inner
	for i := 0; i+1 < len(attrs); i += 2 {
		c.Set(attrs[i], attrs[i+1])
	}
	return c
}

// DeepCopy returns a copy of the whole tree.
func (e *Element) DeepCopy() *Element {
	c := e.ShallowCopy()
	if e.Children != nil {
		c.Children = make([]Node, len(e.Children))
		for i, n := range e.Children {
			if n.El != nil {
				c.Children[i] = Node{El: n.El.DeepCopy()}
			} else {
				c.Children[i] = n
			}
		}
	}
	return c
}

// Append adds child elements and returns e.
func (e *Element) Append(children ...*Element) *Element {
	e.inner = nil
	for _, c := range children {
		if c != nil {
			e.Children = append(e.Children, Node{El: c})
		}
	}
	return e
}

// AppendText adds character data and returns e.
func (e *Element) AppendText(s string) *Element {
	if s != "" {
		e.inner = nil
		e.Children = append(e.Children, Node{Text: s})
	}
	return e
}

// Child returns the first child element with the given name, or nil.
func (e *Element) Child(space, local string) *Element {
	if e == nil {
		return nil
	}
	for _, n := range e.Children {
		if n.El != nil && n.El.Name.Local == local && n.El.Name.Space == space {
			return n.El
		}
	}
	return nil
}

// ChildrenNamed returns every child element with the given name.
func (e *Element) ChildrenNamed(space, local string) []*Element {
	if e == nil {
		return nil
	}
	var out []*Element
	for _, n := range e.Children {
		if n.El != nil && n.El.Name.Local == local && n.El.Name.Space == space {
			out = append(out, n.El)
		}
	}
	return out
}

// Elements returns the child elements in order.
func (e *Element) Elements() []*Element {
	out := make([]*Element, 0, len(e.Children))
	for _, n := range e.Children {
		if n.El != nil {
			out = append(out, n.El)
		}
	}
	return out
}

// FirstElement returns the first child element, or nil.
func (e *Element) FirstElement() *Element {
	for _, n := range e.Children {
		if n.El != nil {
			return n.El
		}
	}
	return nil
}

// Text returns the concatenated character data directly inside e.
func (e *Element) Text() string {
	if e == nil {
		return ""
	}
	if len(e.Children) == 1 && e.Children[0].El == nil {
		return e.Children[0].Text
	}
	var s string
	for _, n := range e.Children {
		if n.El == nil {
			s += n.Text
		}
	}
	return s
}

// ChildText returns the text of the first child with the given name.
func (e *Element) ChildText(space, local string) string {
	return e.Child(space, local).Text()
}

// Without returns a shallow copy of e whose children exclude every element
// for which drop returns true. It returns e itself when nothing is dropped.
func (e *Element) Without(drop func(*Element) bool) *Element {
	keep := -1
	for i, n := range e.Children {
		if n.El != nil && drop(n.El) {
			keep = i
			break
		}
	}
	if keep < 0 {
		return e
	}
	c := e.ShallowCopy()
	c.Children = make([]Node, 0, len(e.Children))
	for _, n := range e.Children {
		if n.El != nil && drop(n.El) {
			continue
		}
		c.Children = append(c.Children, n)
	}
	return c
}

// Replace returns a shallow copy of e with old (compared by pointer)
// replaced by repl among its children.
func (e *Element) Replace(old, repl *Element) *Element {
	c := e.ShallowCopy()
	c.Children = make([]Node, len(e.Children))
	copy(c.Children, e.Children)
	for i, n := range c.Children {
		if n.El == old {
			c.Children[i] = Node{El: repl}
		}
	}
	return c
}

// Stanza accessors. They read the top-level attributes.

// ID returns the id attribute.
func (e *Element) ID() string { return e.Get("id") }

// To returns the to attribute.
func (e *Element) To() string { return e.Get("to") }

// From returns the from attribute.
func (e *Element) From() string { return e.Get("from") }

// Type returns the type attribute.
func (e *Element) Type() string { return e.Get("type") }

// Kind returns the stanza's local name (message, presence, iq) when it is
// in the client namespace, or "".
func (e *Element) Kind() string {
	if e.Name.Space == NSClient {
		return e.Name.Local
	}
	return ""
}
