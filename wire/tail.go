package wire

import (
	"bytes"
	"crypto/tls"
	"encoding/xml"
	"net"

	"xmppbouncer/stanza"
)

// tailSize is how much recent input a Tail keeps: enough for any stream
// error a server sends.
const tailSize = 4 << 10

// Tail wraps the plaintext transport beneath the XML decoder and keeps the
// last bytes read, so that the condition of a peer's stream error can be
// recovered when the decoder above fails on it. Only the reading goroutine
// uses it.
type Tail struct {
	net.Conn
	buf []byte
}

// NewTail wraps c.
func NewTail(c net.Conn) *Tail { return &Tail{Conn: c} }

func (t *Tail) Read(p []byte) (int, error) {
	n, err := t.Conn.Read(p)
	if n > 0 {
		t.buf = append(t.buf, p[:n]...)
		if len(t.buf) > 2*tailSize {
			t.buf = append(t.buf[:0], t.buf[len(t.buf)-tailSize:]...)
		}
	}
	return n, err
}

// StreamError parses the last <stream:error/> in the recent input, or
// returns nil. A nil Tail has none.
func (t *Tail) StreamError() *PeerStreamError {
	if t == nil {
		return nil
	}
	i := bytes.LastIndex(t.buf, []byte("<stream:error"))
	if i < 0 {
		return nil
	}
	d := xml.NewDecoder(bytes.NewReader(t.buf[i:]))
	d.Strict = false // the stream: prefix is declared on the stream header
	var pe *PeerStreamError
	inText := false
	for {
		tok, err := d.Token()
		if err != nil {
			return pe
		}
		switch tt := tok.(type) {
		case xml.StartElement:
			switch {
			case tt.Name.Local == "error" && pe == nil:
				pe = &PeerStreamError{Condition: "undefined-condition"}
			case pe == nil:
				return nil
			case tt.Name.Space == stanza.NSStreams && tt.Name.Local == "text":
				inText = true
			case tt.Name.Space == stanza.NSStreams && pe.Condition == "undefined-condition":
				pe.Condition = tt.Name.Local
			}
		case xml.CharData:
			if inText {
				pe.Text += string(tt)
			}
		case xml.EndElement:
			inText = false
			if tt.Name.Local == "error" {
				return pe
			}
		}
	}
}

// ConnectionState passes through the TLS state of the wrapped connection,
// which mellium needs for SASL channel binding; it is zero without TLS.
func (t *Tail) ConnectionState() tls.ConnectionState {
	if tc, ok := t.Conn.(interface{ ConnectionState() tls.ConnectionState }); ok {
		return tc.ConnectionState()
	}
	return tls.ConnectionState{}
}

// CloseWrite passes through to the wrapped connection when it has one.
func (t *Tail) CloseWrite() error {
	if cw, ok := t.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
