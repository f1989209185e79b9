package stanza

// Error types (RFC 6120 §8.3.2).
const (
	ErrCancel   = "cancel"
	ErrModify   = "modify"
	ErrWait     = "wait"
	ErrAuth     = "auth"
	ErrContinue = "continue"
)

// ErrorReply builds the error response to req (RFC 6120 §8.3): the same
// stanza kind and id, from and to swapped, type error, and an <error/> with
// the given type and defined condition. text may be empty.
func ErrorReply(req *Element, typ, cond, text string) *Element {
	reply := New(NSClient, req.Name.Local, "type", "error", "id", req.ID(), "from", req.To(), "to", req.From())
	reply.Append(ErrorElement(typ, cond, text))
	return reply
}

// ErrorElement builds <error type=typ><cond/><text/></error>.
func ErrorElement(typ, cond, text string) *Element {
	e := New(NSClient, "error", "type", typ)
	e.Append(New(NSStanzas, cond))
	if text != "" {
		e.Append(New(NSStanzas, "text").AppendText(text))
	}
	return e
}

// ErrorCondition returns the defined condition of an error stanza, or "".
func ErrorCondition(st *Element) string {
	e := st.Child(st.Name.Space, "error")
	if e == nil {
		return ""
	}
	for _, c := range e.Elements() {
		if c.Name.Space == NSStanzas && c.Name.Local != "text" {
			return c.Name.Local
		}
	}
	return ""
}

// Result builds an empty IQ result for req.
func Result(req *Element) *Element {
	return New(NSClient, "iq", "type", "result", "id", req.ID(), "from", req.To(), "to", req.From())
}

// StreamError is a stream-level error condition (RFC 6120 §4.9.3).
type StreamError struct {
	Condition string
	Text      string
}

func (e *StreamError) Error() string {
	if e.Text != "" {
		return "stream error: " + e.Condition + ": " + e.Text
	}
	return "stream error: " + e.Condition
}

// Bytes serialises the stream error element.
func (e *StreamError) Bytes() []byte {
	b := []byte(`<stream:error><`)
	b = append(b, e.Condition...)
	b = append(b, ` xmlns="urn:ietf:params:xml:ns:xmpp-streams"/>`...)
	if e.Text != "" {
		b = append(b, `<text xmlns="urn:ietf:params:xml:ns:xmpp-streams">`...)
		b = appendEscaped(b, e.Text, false)
		b = append(b, `</text>`...)
	}
	return append(b, `</stream:error>`...)
}
