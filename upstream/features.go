package upstream

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"

	"mellium.im/sasl"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"

	"xmppbouncer/stanza"
	"xmppbouncer/wire"
)

const (
	nsStartTLS = "urn:ietf:params:xml:ns:xmpp-tls"
	nsSASLCB   = "urn:xmpp:sasl-cb:0" // XEP-0440
)

// startTLS negotiates STARTTLS (RFC 6120 §5) and completes the handshake
// itself, so a certificate problem surfaces here with a clear message
// instead of on the next write.
func startTLS(cfg *tls.Config, wrap func(net.Conn) net.Conn) xmpp.StreamFeature {
	return xmpp.StreamFeature{
		Name:       xml.Name{Space: nsStartTLS, Local: "starttls"},
		Prohibited: xmpp.Secure,
		Parse: func(ctx context.Context, d *xml.Decoder, start *xml.StartElement) (bool, interface{}, error) {
			return true, nil, d.Skip()
		},
		Negotiate: func(ctx context.Context, s *xmpp.Session, _ interface{}) (xmpp.SessionState, io.ReadWriter, error) {
			conn := s.Conn()
			if _, err := io.WriteString(conn, `<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`); err != nil {
				return 0, nil, fmt.Errorf("starttls: %w", err)
			}
			r := s.TokenReader()
			resp, err := wire.NextElement(r)
			r.Close()
			if err != nil {
				return 0, nil, fmt.Errorf("starttls: %w", err)
			}
			switch {
			case resp.Is(nsStartTLS, "proceed"):
			case resp.Is(nsStartTLS, "failure"):
				return 0, nil, errors.New("the server refused STARTTLS")
			case resp.Is(stanza.NSStream, "error"):
				return 0, nil, fmt.Errorf("the server does not support STARTTLS (it answered with stream error %s); try tls = \"direct\"", wire.PeerStreamErrorFrom(resp).Condition)
			default:
				return 0, nil, fmt.Errorf("starttls: unexpected <%s/> from the server", resp.Name.Local)
			}
			tc := tls.Client(conn, cfg)
			if err := tc.HandshakeContext(ctx); err != nil {
				return 0, nil, tlsError(cfg.ServerName, err)
			}
			return xmpp.Secure, wrap(tc), nil
		},
	}
}

// channelBindings records the channel-binding types a server advertises
// (XEP-0440). It is informational: there is nothing to negotiate.
func channelBindings() xmpp.StreamFeature {
	return xmpp.StreamFeature{
		Name:       xml.Name{Space: nsSASLCB, Local: "sasl-channel-binding"},
		Prohibited: xmpp.Authn,
		Parse: func(ctx context.Context, d *xml.Decoder, start *xml.StartElement) (bool, interface{}, error) {
			var v struct {
				Types []struct {
					Type string `xml:"type,attr"`
				} `xml:"urn:xmpp:sasl-cb:0 channel-binding"`
			}
			if err := d.DecodeElement(&v, start); err != nil {
				return false, nil, err
			}
			types := make([]string, 0, len(v.Types))
			for _, t := range v.Types {
				types = append(types, t.Type)
			}
			return false, types, nil
		},
	}
}

// mechanisms in order of preference. PLAIN is last and only used on TLS.
var mechanisms = []sasl.Mechanism{
	sasl.ScramSha256Plus, sasl.ScramSha1Plus,
	sasl.ScramSha256, sasl.ScramSha1,
	sasl.Plain,
}

// chooseMechanism picks the strongest mechanism both sides support on this
// connection. -PLUS (RFC 5802 §6 channel binding) needs a binding both
// sides compute the same way: mellium uses tls-unique on TLS 1.2 and
// tls-exporter (RFC 9266) on TLS 1.3. tls-unique is undefined on TLS 1.3,
// and servers such as Prosody 0.12 only offer -PLUS with tls-unique, so on
// TLS 1.3 we use -PLUS only when the server lists tls-exporter (XEP-0440).
func chooseMechanism(offered []string, cs tls.ConnectionState, cbTypes []string, cbKnown bool) (sasl.Mechanism, error) {
	secure := cs.Version != 0
	cbOK := false
	switch {
	case !secure:
	case cs.Version >= tls.VersionTLS13:
		cbOK = cbKnown && slices.Contains(cbTypes, "tls-exporter")
	default:
		cbOK = len(cs.TLSUnique) > 0 && (!cbKnown || slices.Contains(cbTypes, "tls-unique"))
	}
	for _, m := range mechanisms {
		if !slices.Contains(offered, m.Name) {
			continue
		}
		if strings.HasSuffix(m.Name, "-PLUS") && !cbOK {
			continue
		}
		// RFC 6120 §6.3.3 / RFC 4616 §5: PLAIN sends the password in the
		// clear and is only acceptable inside TLS.
		if m.Name == sasl.Plain.Name && !secure {
			continue
		}
		return m, nil
	}
	if !secure && slices.Contains(offered, sasl.Plain.Name) {
		return sasl.Mechanism{}, fmt.Errorf("the server offers only %s without TLS; refusing to send the password in the clear", strings.Join(offered, ", "))
	}
	return sasl.Mechanism{}, fmt.Errorf("the server offers no SASL mechanism we support (it offers %s; we support SCRAM-SHA-256(-PLUS), SCRAM-SHA-1(-PLUS) and PLAIN over TLS)", strings.Join(offered, ", "))
}

// AuthError is a SASL failure reported by the server (RFC 6120 §6.5).
type AuthError struct {
	JID       jid.JID
	Mechanism string
	Condition string // e.g. "not-authorized"
	Text      string // the server's explanation, may be empty
}

// Error says the credentials were rejected, naming the account.
func (e *AuthError) Error() string {
	msg := fmt.Sprintf("the server rejected the credentials for %s (SASL %s", e.JID, e.Condition)
	if e.Text != "" {
		msg += ": " + e.Text
	}
	msg += ", mechanism " + e.Mechanism + ")"
	if e.Condition == "not-authorized" {
		msg += "; check upstream.jid and upstream.password"
	}
	return msg
}

// authenticate is SASL (RFC 6120 §6) with our own mechanism choice. It
// replaces mellium's feature because that one requires TLS even for the
// loopback-only insecure-plaintext mode and offers PLAIN regardless.
func authenticate(account jid.JID, password string, requireTLS bool, log *slog.Logger) xmpp.StreamFeature {
	var necessary xmpp.SessionState
	if requireTLS {
		// Not before TLS, even if a server offers it (RFC 6120 §5.3.1
		// lets it when TLS is optional).
		necessary = xmpp.Secure
	}
	return xmpp.StreamFeature{
		Name:       xml.Name{Space: stanza.NSSASL, Local: "mechanisms"},
		Necessary:  necessary,
		Prohibited: xmpp.Authn,
		Parse: func(ctx context.Context, d *xml.Decoder, start *xml.StartElement) (bool, interface{}, error) {
			var v struct {
				List []string `xml:"urn:ietf:params:xml:ns:xmpp-sasl mechanism"`
			}
			err := d.DecodeElement(&v, start)
			return true, v.List, err
		},
		Negotiate: func(ctx context.Context, s *xmpp.Session, data interface{}) (xmpp.SessionState, io.ReadWriter, error) {
			offered, _ := data.([]string)
			cs := s.ConnectionState()
			if requireTLS && cs.Version == 0 {
				return 0, nil, errors.New("refusing to authenticate on a connection without TLS")
			}
			cbData, cbKnown := s.Feature(nsSASLCB)
			cbTypes, _ := cbData.([]string)
			mech, err := chooseMechanism(offered, cs, cbTypes, cbKnown && cbData != nil)
			if err != nil {
				return 0, nil, err
			}
			opts := []sasl.Option{
				sasl.Credentials(func() ([]byte, []byte, []byte) {
					return []byte(account.Localpart()), []byte(password), nil
				}),
				sasl.RemoteMechanisms(offered...),
			}
			if cs.Version != 0 {
				opts = append(opts, sasl.TLSState(cs))
			}
			if err := runSASL(ctx, s, sasl.NewClient(mech, opts...), mech.Name, account); err != nil {
				return 0, nil, err
			}
			log.Debug("authenticated", "mechanism", mech.Name)
			return xmpp.Authn, s.Conn(), nil
		},
	}
}

// runSASL exchanges auth/challenge/response until success or failure.
func runSASL(ctx context.Context, s *xmpp.Session, c *sasl.Negotiator, mech string, account jid.JID) error {
	conn := s.Conn()
	more, resp, err := c.Step(nil)
	if err != nil {
		return fmt.Errorf("SASL %s: %w", mech, err)
	}
	// RFC 6120 §6.4.2: an empty initial response is sent as "=".
	auth := stanza.New(stanza.NSSASL, "auth", "mechanism", mech).AppendText(b64(resp))
	if _, err := conn.Write(auth.AppendXML(nil, "")); err != nil {
		return fmt.Errorf("SASL: %w", err)
	}
	r := s.TokenReader()
	defer r.Close()
	for {
		el, err := wire.NextElement(r)
		if err != nil {
			return fmt.Errorf("SASL: %w", err)
		}
		var payload []byte
		if t := strings.TrimSpace(el.Text()); t != "" && t != "=" {
			payload, err = base64.StdEncoding.DecodeString(t)
			if err != nil {
				return fmt.Errorf("SASL: server sent bad base64: %w", err)
			}
		}
		switch {
		case el.Is(stanza.NSSASL, "failure"):
			ae := &AuthError{JID: account, Mechanism: mech, Condition: "unknown", Text: el.ChildText(stanza.NSSASL, "text")}
			for _, c := range el.Elements() {
				if c.Name.Local != "text" {
					ae.Condition = c.Name.Local
					break
				}
			}
			return ae
		case el.Is(stanza.NSSASL, "success"):
			// RFC 5802 §5.1: the server's final message (v=) proves it
			// knows the credentials too; verify it when the mechanism
			// still expects it.
			if more {
				if _, _, err := c.Step(payload); err != nil {
					return fmt.Errorf("SASL %s: the server's final message did not verify (%w); this is not the server we expect", mech, err)
				}
			}
			return nil
		case el.Is(stanza.NSSASL, "challenge"):
			if !more {
				return fmt.Errorf("SASL %s: unexpected challenge after the exchange ended", mech)
			}
			more, resp, err = c.Step(payload)
			if err != nil {
				return fmt.Errorf("SASL %s: %w", mech, err)
			}
			r := stanza.New(stanza.NSSASL, "response").AppendText(b64(resp))
			if _, err := conn.Write(r.AppendXML(nil, "")); err != nil {
				return fmt.Errorf("SASL: %w", err)
			}
		case el.Is(stanza.NSStream, "error"):
			return fmt.Errorf("SASL: stream error %s from the server", wire.PeerStreamErrorFrom(el).Condition)
		default:
			return fmt.Errorf("SASL: unexpected <%s/> from the server", el.Name.Local)
		}
	}
}

func b64(b []byte) string {
	if len(b) == 0 {
		return "="
	}
	return base64.StdEncoding.EncodeToString(b)
}
