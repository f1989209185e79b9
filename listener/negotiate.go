package listener

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"

	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stream"

	"xmppbouncer/stanza"
)

const (
	nsTLS = "urn:ietf:params:xml:ns:xmpp-tls"
	nsXML = "http://www.w3.org/XML/1998/namespace"

	// negotiationMaxDepth bounds nesting in negotiation elements; the deepest
	// legitimate one is <iq><bind><resource/></bind></iq>.
	negotiationMaxDepth = 8
	// maxNegotiationSteps bounds the elements a client may send before it is
	// bound, so a loop of refused attempts cannot go on for the whole deadline.
	maxNegotiationSteps = 32
)

// errPeerStreamError is a stream error the client sent; we only close.
var errPeerStreamError = errors.New("listener: client sent a stream error")

// negotiation is the per-connection state of the server-side stream
// negotiation (RFC 6120 §4.3). Its negotiate method is the xmpp.Negotiator
// that xmpp.ReceiveSession calls once per stream (re)start.
//
// We drive the features ourselves rather than through xmpp.NewNegotiator:
// mellium v0.22.0's feature loop refuses whitespace between elements (RFC
// 6120 §11.7 allows it), cannot answer a wrong 'to' with <host-unknown/>,
// and echoes the client's 'from' into our header unescaped.
type negotiation struct {
	srv    *Server
	ctx    context.Context // ends at the negotiation deadline or shutdown
	remote string
	ip     string

	headerSent   bool // our header for the current stream is out
	steps        int
	authFailures int
	failCond     string // SASL failure condition picked by the credential checks
	failReason   string // for the log only; never the secret itself
	mechanism    string
	authed       bool // SASL succeeded
	// authenticated is called once SASL succeeds: the connection leaves the
	// unauthenticated count and gets the rest of the negotiation deadline.
	authenticated func()
	jid           jid.JID
	bindReply     *stanza.Element // sent once the Handler knows the client
	resume        *Client         // XEP-0198: the session this stream resumes
	resumeH       uint32          // ... and the client's h
	revive        *Resumable      // XEP-0198: a session stored by an earlier run (smstore.go)

	// SASL2 (sasl2.go): the client's user agent, the <success/> that goes
	// out first on the client's connection when binding or resuming
	// inline, and what Bind2 asked for.
	ua            UserAgent
	inlineSuccess *stanza.Element
	bind2Req      *bind2Request
	fastHash      []byte     // the FAST token this login used, if any
	fastToken     *FastToken // ... as stored
	sess          *xmpp.Session
}

func (n *negotiation) negotiate(_ context.Context, in, out *stream.Info, s *xmpp.Session, _ interface{}) (xmpp.SessionState, io.ReadWriter, interface{}, error) {
	ctx := n.ctx
	n.sess = s
	if !n.headerSent {
		if err := n.openStream(s, in, out); err != nil {
			return 0, nil, nil, err
		}
	}
	state := s.State()
	if err := n.write(s, n.features(state)); err != nil {
		return 0, nil, nil, err
	}
	for {
		el, err := n.nextElement(s)
		if err != nil {
			return 0, nil, nil, err
		}
		n.steps++
		if n.steps > maxNegotiationSteps {
			return 0, nil, nil, &stanza.StreamError{Condition: "policy-violation", Text: "too many negotiation attempts"}
		}
		var mask xmpp.SessionState
		var rw io.ReadWriter
		switch {
		case el.Is(nsTLS, "starttls") && state&xmpp.Secure == 0:
			mask, rw, err = n.srv.startTLS.Negotiate(ctx, s, nil)
		case el.Name.Space == stanza.NSSASL && state&xmpp.Secure != 0 && state&xmpp.Authn == 0:
			mask, rw, err = n.authenticate(ctx, s, el)
		case el.Name.Space == nsSASL2 && state&xmpp.Secure != 0 && state&xmpp.Authn == 0:
			mask, err = n.authenticate2(ctx, s, in, el)
		case el.Kind() == "iq" && el.Child(stanza.NSBind, "bind") != nil && state&xmpp.Authn != 0:
			mask, err = n.bind(s, in, el)
		case el.Is(nsSM, "resume") && state&xmpp.Authn != 0:
			// XEP-0198 §5: resumption takes the place of binding.
			ok, failed := n.tryResume(el)
			if !ok {
				err = n.write(s, failed)
				break
			}
			in.From = n.jid
			mask = xmpp.Ready
		case el.Name.Space == nsSM:
			// XEP-0198 §3: <enable/> only after binding; <resume/> only
			// after authentication.
			err = n.write(s, smFailed("unexpected-request").AppendXML(nil, stanza.NSClient))
		default:
			err = unexpected(el, state)
		}
		if err != nil {
			return 0, nil, nil, err
		}
		if rw != nil {
			// RFC 6120 §5.4.3.3 and §6.4.6: TLS and SASL success restart the stream.
			n.headerSent = false
			return mask, rw, nil, nil
		}
		if mask&(xmpp.Ready|xmpp.Authn) != 0 {
			// SASL2 success does not restart the stream: back to the
			// session, which calls us again for the next features.
			return mask, nil, nil, nil
		}
	}
}

// unexpected picks the stream error for an element that is not the next
// step of negotiation.
func unexpected(el *stanza.Element, state xmpp.SessionState) error {
	switch {
	case el.Kind() == "message" || el.Kind() == "presence" || el.Kind() == "iq":
		// RFC 6120 §4.9.3.12: stanzas before authentication and binding.
		return &stanza.StreamError{Condition: "not-authorized", Text: "authenticate and bind a resource first"}
	case el.Name.Space == stanza.NSSASL && state&xmpp.Secure == 0:
		// RFC 6120 §5.3.1: we require TLS before anything else.
		return &stanza.StreamError{Condition: "policy-violation", Text: "use STARTTLS first"}
	case el.Name.Space == nsSASL2 && state&xmpp.Secure == 0:
		return &stanza.StreamError{Condition: "policy-violation", Text: "use STARTTLS first"}
	case el.Name.Space == nsSASL2 && state&xmpp.Authn != 0:
		// XEP-0388: one successful authentication per stream.
		return &stanza.StreamError{Condition: "policy-violation", Text: "already authenticated"}
	case el.Name.Space == nsTLS || el.Name.Space == stanza.NSSASL || el.Name.Space == nsSASL2:
		return &stanza.StreamError{Condition: "policy-violation", Text: "feature " + el.Name.Local + " is not available now"}
	default:
		return &stanza.StreamError{Condition: "unsupported-stanza-type"}
	}
}

// openStream reads the client's stream header and answers with ours
// (RFC 6120 §4.2, §4.7).
func (n *negotiation) openStream(s *xmpp.Session, in, out *stream.Info) error {
	start, err := readHeader(s)
	if err != nil {
		return err
	}
	var to, from, version, ns, lang string
	var hasVersion, hasNS bool
	for _, a := range start.Attr {
		switch {
		case a.Name.Space == "" && a.Name.Local == "to":
			to = a.Value
		case a.Name.Space == "" && a.Name.Local == "from":
			from = a.Value
		case a.Name.Space == "" && a.Name.Local == "version":
			version, hasVersion = a.Value, true
		case a.Name.Space == "" && a.Name.Local == "xmlns":
			ns, hasNS = a.Value, true
		case (a.Name.Space == nsXML || a.Name.Space == "xml") && a.Name.Local == "lang":
			lang = a.Value
		}
	}
	var fromJID jid.JID
	if from != "" {
		// RFC 6120 §4.7.1: 'from' is informational; a bad one is just not echoed.
		if j, err := jid.Parse(from); err == nil {
			fromJID = j
		}
	}
	// The header goes out before any error, as RFC 6120 §4.9.1.2 requires.
	if err := n.sendHeader(s, fromJID.String()); err != nil {
		return err
	}
	switch {
	case start.Name.Space != stanza.NSStream:
		return &stanza.StreamError{Condition: "invalid-namespace", Text: "the stream namespace must be " + stanza.NSStream}
	case !hasNS || ns != stanza.NSClient:
		// RFC 6120 §4.8.2: the content namespace of a c2s stream.
		return &stanza.StreamError{Condition: "invalid-namespace", Text: "the default namespace must be " + stanza.NSClient}
	case !hasVersion || !strings.HasPrefix(version, "1."):
		// RFC 6120 §4.7.5: no version means pre-1.0, which we do not speak.
		return &stanza.StreamError{Condition: "unsupported-version", Text: "version 1.0 is required"}
	}
	if to != "" {
		// RFC 6120 §4.9.3.6: we serve exactly one domain.
		if j, err := jid.Parse(to); err != nil || !j.Equal(n.srv.domain) {
			return &stanza.StreamError{Condition: "host-unknown", Text: "this server serves " + n.srv.domain.String() + " only"}
		}
	}
	in.Name = start.Name
	in.XMLNS = ns
	in.To = n.srv.domain
	in.Lang = lang
	in.From = fromJID
	out.XMLNS = stanza.NSClient
	out.From = n.srv.domain
	out.To = fromJID
	out.Version = stream.DefaultVersion
	return nil
}

// readHeader returns the client's <stream:stream> start element, skipping an
// XML declaration and whitespace.
func readHeader(s *xmpp.Session) (xml.StartElement, error) {
	r := s.TokenReader()
	defer r.Close()
	for {
		tok, err := r.Token()
		if err != nil {
			return xml.StartElement{}, err
		}
		switch t := tok.(type) {
		case xml.ProcInst:
			if t.Target != "xml" {
				return xml.StartElement{}, &stanza.StreamError{Condition: "restricted-xml"}
			}
		case xml.CharData:
			if len(bytes.TrimLeft(t, " \t\r\n")) != 0 {
				return xml.StartElement{}, &stanza.StreamError{Condition: "not-well-formed", Text: "text before the stream header"}
			}
		case xml.StartElement:
			if t.Name.Local != "stream" {
				return xml.StartElement{}, &stanza.StreamError{Condition: "bad-format", Text: "expected a stream header"}
			}
			return t.Copy(), nil
		default:
			return xml.StartElement{}, &stanza.StreamError{Condition: "restricted-xml"}
		}
	}
}

// sendHeader writes our stream header for the current stream.
func (n *negotiation) sendHeader(s *xmpp.Session, to string) error {
	if _, err := s.Conn().Write(streamHeader(n.srv.domain.String(), to)); err != nil {
		return fmt.Errorf("writing stream header: %w", err)
	}
	n.headerSent = true
	return nil
}

func streamHeader(from, to string) []byte {
	var id [12]byte
	_, _ = rand.Read(id[:])
	var b bytes.Buffer
	b.WriteString(`<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' xml:lang='en' id='`)
	b.WriteString(hex.EncodeToString(id[:]))
	b.WriteString(`' from='`)
	_ = xml.EscapeText(&b, []byte(from))
	if to != "" {
		b.WriteString(`' to='`)
		_ = xml.EscapeText(&b, []byte(to))
	}
	b.WriteString(`'>`)
	return b.Bytes()
}

// features lists what may be negotiated next (RFC 6120 §4.3.2). Before TLS
// only STARTTLS is offered, so no mechanism is ever shown in the clear.
func (n *negotiation) features(state xmpp.SessionState) []byte {
	list := stanza.New(stanza.NSStream, "features")
	switch {
	case state&xmpp.Secure == 0:
		list.Append(stanza.New(nsTLS, "starttls").Append(stanza.New(nsTLS, "required")))
	case state&xmpp.Authn == 0:
		mechs := stanza.New(stanza.NSSASL, "mechanisms")
		for _, m := range n.srv.mechanisms {
			mechs.Append(stanza.New(stanza.NSSASL, "mechanism").AppendText(m.Name))
		}
		list.Append(mechs)
		n.sasl2Features(list)
	default:
		list.Append(
			stanza.New(stanza.NSBind, "bind"),
			// RFC 6121 was amended (draft-cridland-xmpp-session): an optional
			// session tells clients to skip the legacy session IQ.
			stanza.New(stanza.NSSession, "session").Append(stanza.New(stanza.NSSession, "optional")),
			// XEP-0352: the bouncer core implements client state indication.
			stanza.New(stanza.NSCSI, "csi"),
			// XEP-0198: enable after binding, or resume instead of binding.
			stanza.New(nsSM, "sm"),
		)
	}
	b := []byte("<stream:features>")
	for _, c := range list.Elements() {
		b = c.AppendXML(b, stanza.NSClient)
	}
	return append(b, "</stream:features>"...)
}

// nextElement reads the client's next top-level element. Whitespace between
// elements is skipped (RFC 6120 §11.7); the end of the stream is io.EOF.
func (n *negotiation) nextElement(s *xmpp.Session) (*stanza.Element, error) {
	r := s.TokenReader()
	defer r.Close()
	for {
		tok, err := r.Token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.CharData:
			if len(bytes.TrimLeft(t, " \t\r\n")) != 0 {
				return nil, &stanza.StreamError{Condition: "not-well-formed", Text: "text at stream level"}
			}
		case xml.StartElement:
			el, err := stanza.ReadElement(r, t, negotiationMaxDepth)
			if err != nil {
				return nil, err
			}
			if el.Name.Space == stanza.NSStream {
				if el.Name.Local == "error" {
					return nil, errPeerStreamError
				}
				return nil, &stanza.StreamError{Condition: "unsupported-stanza-type", Text: "unexpected stream element " + el.Name.Local}
			}
			return el, nil
		case xml.EndElement:
			return nil, io.EOF // </stream:stream>
		default:
			// RFC 6120 §11.1: no comments, PIs or DTDs on a stream.
			return nil, &stanza.StreamError{Condition: "restricted-xml"}
		}
	}
}

// bind answers a resource binding request (RFC 6120 §7). Whether another
// session holds the same resource is the bouncer core's decision, made when
// it learns of the client; here the client's choice is kept as it is.
func (n *negotiation) bind(s *xmpp.Session, in *stream.Info, iq *stanza.Element) (xmpp.SessionState, error) {
	if iq.Type() != "set" || iq.ID() == "" {
		// RFC 6120 §7: binding is an IQ of type set, with an id.
		return 0, n.write(s, stanza.ErrorReply(iq, stanza.ErrModify, "bad-request", "").AppendXML(nil, stanza.NSClient))
	}
	res := iq.Child(stanza.NSBind, "bind").ChildText(stanza.NSBind, "resource")
	full, err := jid.New(n.srv.username, n.srv.domain.Domainpart(), res)
	if res == "" || err != nil || full.Resourcepart() == "" || full.Resourcepart() == n.srv.cfg.ReservedResource {
		// RFC 6120 §7.6: the server generates a resource when the client
		// gives none; an unusable one is replaced the same way.
		full, err = jid.New(n.srv.username, n.srv.domain.Domainpart(), randomResource())
		if err != nil {
			return 0, fmt.Errorf("bind: generating a resource: %w", err)
		}
	}
	reply := stanza.New(stanza.NSClient, "iq", "type", "result", "id", iq.ID())
	reply.Append(stanza.New(stanza.NSBind, "bind").Append(stanza.New(stanza.NSBind, "jid").AppendText(full.String())))
	// The result goes out through the client's queue right after the core
	// has registered the session (see serveConn), so a client that acts on
	// it at once, e.g. with an IQ to a sibling, is already routable.
	n.bindReply = reply
	n.jid = full
	in.From = full
	return xmpp.Ready, nil
}

func randomResource() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "xb-" + hex.EncodeToString(b[:])
}

func (n *negotiation) write(s *xmpp.Session, b []byte) error {
	if _, err := s.Conn().Write(b); err != nil {
		return fmt.Errorf("negotiation write: %w", err)
	}
	return nil
}
