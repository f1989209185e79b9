package wire

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"strconv"
	"sync/atomic"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"

	"xmppbouncer/stanza"
)

var bindSeq atomic.Uint64

// ClientBind is the client side of resource binding (RFC 6120 §7) that asks
// for the given resource. mellium's own BindResource sends an empty
// <resource/>, so the server would pick one. On success *bound holds the
// full JID the server assigned.
func ClientBind(resource string, bound *jid.JID) xmpp.StreamFeature {
	return xmpp.StreamFeature{
		Name:       xml.Name{Space: stanza.NSBind, Local: "bind"},
		Necessary:  xmpp.Authn,
		Prohibited: xmpp.Ready,
		Parse: func(ctx context.Context, d *xml.Decoder, start *xml.StartElement) (bool, interface{}, error) {
			return true, nil, d.Skip()
		},
		Negotiate: func(ctx context.Context, s *xmpp.Session, _ interface{}) (xmpp.SessionState, io.ReadWriter, error) {
			id := "bind" + strconv.FormatUint(bindSeq.Add(1), 10)
			req := stanza.New(stanza.NSClient, "iq", "type", "set", "id", id)
			b := stanza.New(stanza.NSBind, "bind")
			if resource != "" {
				b.Append(stanza.New(stanza.NSBind, "resource").AppendText(resource))
			}
			req.Append(b)
			if _, err := s.Conn().Write(req.AppendXML(nil, stanza.NSClient)); err != nil {
				return 0, nil, fmt.Errorf("bind: %w", err)
			}
			r := s.TokenReader()
			defer r.Close()
			resp, err := NextElement(r)
			if err != nil {
				return 0, nil, fmt.Errorf("bind: %w", err)
			}
			if resp.Kind() != "iq" || resp.ID() != id {
				return 0, nil, fmt.Errorf("bind: unexpected reply %s", resp)
			}
			if resp.Type() == "error" {
				return 0, nil, fmt.Errorf("bind refused: %s", stanza.ErrorCondition(resp))
			}
			j, err := jid.Parse(resp.Child(stanza.NSBind, "bind").ChildText(stanza.NSBind, "jid"))
			if err != nil {
				return 0, nil, fmt.Errorf("bind: server sent a bad JID: %w", err)
			}
			*bound = j
			s.UpdateAddr(j)
			return xmpp.Ready, nil, nil
		},
	}
}

// NextElement skips whitespace and reads the next whole element; for
// negotiation steps, before a Conn exists.
func NextElement(r xmlstream.TokenReadCloser) (*stanza.Element, error) {
	for {
		tok, err := r.Token()
		if err != nil {
			return nil, err
		}
		if start, ok := tok.(xml.StartElement); ok {
			return stanza.ReadElement(r, start, 64)
		}
	}
}
