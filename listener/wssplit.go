package listener

import "bytes"

// frameKind is what the splitter found in the server's output.
type frameKind int

const (
	frameElement     frameKind = iota
	frameKeepAlive             // whitespace between elements: a WebSocket ping instead
	frameSASLSuccess           // <success/>: the client's next <open/> restarts the stream
)

// splitter cuts the byte stream the server writes (what a TCP client would
// read) into RFC 7395 frames: the stream header becomes <open/>, the end
// tag <close/>, and each top-level element one frame, given the namespace
// declarations it inherited from the stream header. It relies on the
// server's own output being well-formed: it is never fed client input.
type splitter struct {
	cur      []byte // the top-level element being collected
	depth    int
	inTag    bool
	quote    byte
	tagStart int
}

func (s *splitter) feed(p []byte, emit func(frameKind, []byte)) {
	for _, ch := range p {
		if !s.inTag {
			switch {
			case ch == '<':
				s.inTag = true
				s.tagStart = len(s.cur)
				s.cur = append(s.cur, ch)
			case s.depth == 0:
				// Only whitespace is written between elements.
				emit(frameKeepAlive, nil)
			default:
				s.cur = append(s.cur, ch)
			}
			continue
		}
		s.cur = append(s.cur, ch)
		switch {
		case s.quote != 0:
			if ch == s.quote {
				s.quote = 0
			}
		case ch == '"' || ch == '\'':
			s.quote = ch
		case ch == '>':
			s.inTag = false
			s.tag(emit)
		}
	}
}

const framingOpen = `<open xmlns='` + nsFraming + `'`

func (s *splitter) tag(emit func(frameKind, []byte)) {
	tag := s.cur[s.tagStart:]
	switch {
	case bytes.HasPrefix(tag, []byte("<?")) && s.depth == 0:
		s.cur = s.cur[:s.tagStart] // the XML declaration: none in frames
		return
	case bytes.HasPrefix(tag, []byte("</")):
		if s.depth == 0 {
			emit(frameElement, []byte(`<close xmlns='`+nsFraming+`'/>`))
			s.reset()
			return
		}
		s.depth--
		if s.depth == 0 {
			s.emitCur(emit)
		}
		return
	}
	self := bytes.HasSuffix(tag, []byte("/>"))
	if s.depth > 0 {
		if !self {
			s.depth++
		}
		return
	}
	name, attrs := parseTag(tag)
	switch {
	case name == "stream:stream":
		b := []byte(framingOpen)
		for _, a := range attrs {
			switch a.name {
			case "from", "to", "id", "version", "xml:lang":
				b = append(b, ' ')
				b = append(b, a.raw...)
			}
		}
		emit(frameElement, append(b, "/>"...))
		s.reset()
		return
	case bytes.HasPrefix([]byte(name), []byte("stream:")):
		if !hasAttr(attrs, "xmlns:stream") {
			s.insert(len(name)+1, " xmlns:stream='"+"http://etherx.jabber.org/streams'")
		}
	default:
		if !hasAttr(attrs, "xmlns") {
			s.insert(len(name)+1, " xmlns='jabber:client'")
		}
	}
	if self {
		s.emitCur(emit)
		return
	}
	s.depth++
}

// insert adds text into the current top-level start tag at offset off.
func (s *splitter) insert(off int, text string) {
	at := s.tagStart + off
	s.cur = append(s.cur[:at], append([]byte(text), s.cur[at:]...)...)
}

func (s *splitter) emitCur(emit func(frameKind, []byte)) {
	kind := frameElement
	if bytes.HasPrefix(s.cur, []byte("<success xmlns='"+nsSASLConst+"'")) || bytes.HasPrefix(s.cur, []byte(`<success xmlns="`+nsSASLConst+`"`)) {
		kind = frameSASLSuccess
	}
	emit(kind, s.cur)
	s.reset()
}

func (s *splitter) reset() {
	if cap(s.cur) > 64<<10 {
		s.cur = nil
	} else {
		s.cur = s.cur[:0]
	}
	s.depth, s.tagStart = 0, 0
}

const nsSASLConst = "urn:ietf:params:xml:ns:xmpp-sasl"

type rawAttr struct {
	name string
	raw  []byte // name='value' as written
}

// parseTag reads the name and attributes of a start tag the server wrote.
func parseTag(tag []byte) (string, []rawAttr) {
	i := 1
	for i < len(tag) && !isSpace(tag[i]) && tag[i] != '/' && tag[i] != '>' {
		i++
	}
	name := string(tag[1:i])
	var attrs []rawAttr
	for i < len(tag) {
		for i < len(tag) && isSpace(tag[i]) {
			i++
		}
		start := i
		for i < len(tag) && tag[i] != '=' && tag[i] != '>' && tag[i] != '/' && !isSpace(tag[i]) {
			i++
		}
		if i >= len(tag) || tag[i] != '=' {
			break
		}
		an := string(tag[start:i])
		i++ // '='
		if i >= len(tag) || (tag[i] != '\'' && tag[i] != '"') {
			break
		}
		q := tag[i]
		j := bytes.IndexByte(tag[i+1:], q)
		if j < 0 {
			break
		}
		i += j + 2
		attrs = append(attrs, rawAttr{name: an, raw: tag[start:i]})
	}
	return name, attrs
}

func hasAttr(attrs []rawAttr, name string) bool {
	for _, a := range attrs {
		if a.name == name {
			return true
		}
	}
	return false
}

func isSpace(b byte) bool { return b == ' ' || b == '\t' || b == '\r' || b == '\n' }
