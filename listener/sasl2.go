package listener

import (
	"context"
	"encoding/base64"
	"strings"
	"unicode/utf8"

	"mellium.im/sasl"
	"mellium.im/xmpp"
	"mellium.im/xmpp/stream"

	"xmppbouncer/stanza"
)

// XEP-0388 Extensible SASL Profile (SASL2) and the namespaces that ride in
// its <authenticate/>.
const (
	nsSASL2  = "urn:xmpp:sasl:2"
	nsBind2  = "urn:xmpp:bind:0"
	nsFAST   = "urn:xmpp:fast:0"
	nsSASLCB = "urn:xmpp:sasl-cb:0"

	// maxInitialResponse bounds a SASL2 initial response or response, in
	// base64 characters: SCRAM and HT messages are a few hundred bytes.
	maxInitialResponse = 4096
	// maxUserAgentField bounds what we keep of <software/> and <device/>.
	maxUserAgentField = 128
	// maxUserAgentID bounds the user-agent id (a UUID is 36 characters).
	maxUserAgentID = 128
)

// UserAgent is what a SASL2 client said about itself (XEP-0388 §2.3.1).
type UserAgent struct {
	ID       string // stable per installation; "" when not given
	Software string
	Device   string
}

// UserAgent is what the client said about itself at login (SASL2 only).
func (c *Client) UserAgent() UserAgent { return c.ua }

// Bind2Carbons reports whether the client enabled XEP-0280 carbons inline
// in its Bind2 request (XEP-0386 §2.4); the core treats it like an
// <enable xmlns='urn:xmpp:carbons:2'/> IQ sent right after binding.
func (c *Client) Bind2Carbons() bool { return c.bind2Carbons }

// sasl2Features is the <authentication/> feature and its inline features,
// plus the XEP-0440 channel-binding list.
func (n *negotiation) sasl2Features(list *stanza.Element) {
	auth := stanza.New(nsSASL2, "authentication")
	for _, m := range n.sasl2Mechanisms() {
		auth.Append(stanza.New(nsSASL2, "mechanism").AppendText(m))
	}
	inline := stanza.New(nsSASL2, "inline")
	inline.Append(stanza.New(nsBind2, "bind").Append(stanza.New(nsBind2, "inline").Append(
		stanza.New(nsBind2, "feature", "var", stanza.NSCarbons),
		stanza.New(nsBind2, "feature", "var", stanza.NSCSI),
		stanza.New(nsBind2, "feature", "var", nsSM),
	)))
	inline.Append(stanza.New(nsSM, "sm"))
	if fm := n.fastMechanisms(); len(fm) > 0 {
		fast := stanza.New(nsFAST, "fast")
		for _, m := range fm {
			fast.Append(stanza.New(nsFAST, "mechanism").AppendText(m))
		}
		inline.Append(fast)
	}
	auth.Append(inline)
	list.Append(auth)
	if cb := n.cbTypes(); len(cb) > 0 {
		scb := stanza.New(nsSASLCB, "sasl-channel-binding")
		for _, t := range cb {
			scb.Append(stanza.New(nsSASLCB, "channel-binding", "type", t))
		}
		list.Append(scb)
	}
}

// sasl2Mechanisms are the password mechanisms offered over SASL2: the
// channel-bound SCRAM variants first when a binding can be computed on this
// connection.
func (n *negotiation) sasl2Mechanisms() []string {
	var out []string
	if len(n.cbTypes()) > 0 {
		out = append(out, "SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS")
	}
	for _, m := range n.srv.mechanisms {
		out = append(out, m.Name)
	}
	return out
}

// parseUserAgent reads <user-agent id='…'><software/><device/></user-agent>.
func parseUserAgent(el *stanza.Element) (UserAgent, bool) {
	u := el.Child(nsSASL2, "user-agent")
	if u == nil {
		return UserAgent{}, true
	}
	ua := UserAgent{
		ID:       strings.TrimSpace(u.Get("id")),
		Software: clip(strings.TrimSpace(u.ChildText(nsSASL2, "software")), maxUserAgentField),
		Device:   clip(strings.TrimSpace(u.ChildText(nsSASL2, "device")), maxUserAgentField),
	}
	if len(ua.ID) > maxUserAgentID || !utf8.ValidString(ua.ID) {
		return UserAgent{}, false
	}
	return ua, true
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// stepper is one SASL exchange on the server side: mellium's negotiator,
// our SCRAM with channel binding, or a FAST token mechanism.
type stepper interface {
	Step(in []byte) (more bool, resp []byte, err error)
}

// authenticate2 runs one SASL2 exchange (XEP-0388 §2.4) that el starts.
// Like authenticate, a failed exchange leaves the stream open for a retry.
// On success there is no stream restart: either the stream is Ready (an
// inline resume or Bind2 was asked for; the <success/> goes out first on
// the client's connection) or new features follow at once.
func (n *negotiation) authenticate2(ctx context.Context, s *xmpp.Session, in *stream.Info, el *stanza.Element) (xmpp.SessionState, error) {
	if !el.Is(nsSASL2, "authenticate") {
		return 0, &stanza.StreamError{Condition: "policy-violation", Text: "<" + el.Name.Local + "/> outside of a SASL2 exchange"}
	}
	name := el.Get("mechanism")
	ua, ok := parseUserAgent(el)
	if !ok {
		return 0, n.fail2(ctx, s, name, "malformed-request", "the user-agent id is not usable", "")
	}
	n.ua = ua
	n.failCond, n.failReason = "", ""
	st, cond, text := n.newStepper(s, name, el)
	if st == nil {
		return 0, n.fail2(ctx, s, name, cond, text, text)
	}
	ir := el.Child(nsSASL2, "initial-response")
	var payload []byte
	if ir != nil {
		if len(ir.Text()) > maxInitialResponse {
			return 0, n.fail2(ctx, s, name, "malformed-request", "initial response too large", "initial response too large")
		}
		var ok bool
		if payload, _, ok = decodePayload(ir.Text()); !ok {
			return 0, n.fail2(ctx, s, name, "incorrect-encoding", "initial response is not base64", "initial response is not base64")
		}
	} else {
		if err := n.write(s, []byte(`<challenge xmlns='urn:xmpp:sasl:2'/>`)); err != nil {
			return 0, err
		}
		var done bool
		var err error
		if payload, done, err = n.readResponse2(ctx, s, name); done || err != nil {
			return 0, err
		}
	}
	for {
		more, resp, err := stepAny(st, payload)
		if err != nil {
			cond, reason := n.stepFailure()
			return 0, n.fail2(ctx, s, name, cond, reason, failText(cond))
		}
		if !more {
			return n.success2(ctx, s, in, el, name, resp)
		}
		if err := n.write(s, sasl2Data("challenge", resp)); err != nil {
			return 0, err
		}
		var done bool
		if payload, done, err = n.readResponse2(ctx, s, name); done || err != nil {
			return 0, err
		}
	}
}

// failText is the text of a SASL2 failure: what the user can act on,
// never which of username and password was wrong.
func failText(cond string) string {
	switch cond {
	case "not-authorized":
		return "wrong username, password or token"
	case "invalid-authzid":
		return "you can only log in as the account itself"
	case "credentials-expired":
		return "the token has expired; log in with the password"
	}
	return ""
}

// newStepper picks the exchange for a mechanism, or why there is none.
func (n *negotiation) newStepper(s *xmpp.Session, name string, el *stanza.Element) (stepper, string, string) {
	if rt := el.Child(nsFAST, "request-token"); rt != nil {
		switch {
		case !n.fastOffered(rt.Get("mechanism")):
			return nil, "malformed-request", "FAST mechanism " + rt.Get("mechanism") + " is not offered"
		case n.ua.ID == "":
			return nil, "malformed-request", "a FAST token needs a user-agent id"
		}
	}
	if strings.HasPrefix(name, "HT-") {
		return n.newFASTStepper(s, name, el)
	}
	if strings.HasSuffix(name, "-PLUS") {
		if sc := n.newSCRAMPlus(s, name); sc != nil {
			return sc, "", ""
		}
		return nil, "invalid-mechanism", "mechanism " + name + " is not offered"
	}
	for _, m := range n.srv.mechanisms {
		if m.Name == name {
			if sc := n.newSCRAM(s, name); sc != nil {
				return sc, "", ""
			}
			return sasl.NewServer(m, n.checkPlain, sasl.SaltedCredentials(n.scramCredentials)), "", ""
		}
	}
	return nil, "invalid-mechanism", "mechanism " + name + " is not offered"
}

func stepAny(st stepper, in []byte) (bool, []byte, error) {
	if neg, ok := st.(*sasl.Negotiator); ok {
		return step(neg, in)
	}
	return st.Step(in)
}

// readResponse2 reads the client's SASL2 <response/> to a challenge.
func (n *negotiation) readResponse2(ctx context.Context, s *xmpp.Session, mech string) (payload []byte, done bool, err error) {
	el, err := n.nextElement(s)
	if err != nil {
		return nil, true, err
	}
	n.steps++
	switch {
	case el.Is(nsSASL2, "response"):
		if len(el.Text()) > maxInitialResponse {
			return nil, true, n.fail2(ctx, s, mech, "malformed-request", "response too large", "response too large")
		}
		payload, _, ok := decodePayload(el.Text())
		if !ok {
			return nil, true, n.fail2(ctx, s, mech, "incorrect-encoding", "response is not base64", "response is not base64")
		}
		return payload, false, nil
	case el.Is(nsSASL2, "abort"):
		return nil, true, n.write(s, sasl2Failure("aborted", "the client aborted"))
	default:
		return nil, true, &stanza.StreamError{Condition: "policy-violation", Text: "expected a SASL2 response"}
	}
}

// fail2 answers a failed SASL2 exchange: it counts towards the per-address
// delay and the per-stream retries exactly like a legacy SASL failure.
func (n *negotiation) fail2(ctx context.Context, s *xmpp.Session, mech, cond, reason, text string) error {
	return n.authFailedWith(ctx, s, mech, cond, reason, sasl2Failure(cond, text))
}

func sasl2Failure(cond, text string) []byte {
	f := stanza.New(nsSASL2, "failure").Append(stanza.New(stanza.NSSASL, cond))
	if text != "" {
		f.Append(stanza.New(nsSASL2, "text").AppendText(text))
	}
	return f.AppendXML(nil, stanza.NSClient)
}

func sasl2Data(name string, data []byte) []byte {
	el := stanza.New(nsSASL2, name)
	if len(data) > 0 {
		el.AppendText(base64.StdEncoding.EncodeToString(data))
	}
	return el.AppendXML(nil, stanza.NSClient)
}

// success2 finishes a successful SASL2 exchange: FAST tokens, then an
// inline resume, else Bind2, else plain success and new features.
func (n *negotiation) success2(ctx context.Context, s *xmpp.Session, in *stream.Info, el *stanza.Element, name string, final []byte) (xmpp.SessionState, error) {
	n.mechanism = name
	n.authed = true
	if n.authenticated != nil {
		n.authenticated()
	}
	succ := stanza.New(nsSASL2, "success")
	if len(final) > 0 {
		succ.Append(stanza.New(nsSASL2, "additional-data").AppendText(base64.StdEncoding.EncodeToString(final)))
	}
	authz := stanza.New(nsSASL2, "authorization-identifier").AppendText(n.srv.bare.String())
	succ.Append(authz)
	if tok := n.fastAfterSuccess(ctx, el); tok != nil {
		succ.Append(tok)
	}
	if r := el.Child(nsSM, "resume"); r != nil {
		ok, failed := n.tryResume(r)
		if ok {
			// The <resumed/> goes inside this <success/>, built by takeOver
			// with the session's h at the moment it moves.
			authz.Children = nil
			authz.AppendText(n.jid.String())
			n.inlineSuccess = succ
			in.From = n.jid
			return xmpp.Authn | xmpp.Ready, nil
		}
		if f, err := stanza.Parse(string(failed)); err == nil {
			succ.Append(f)
		}
	}
	if b := el.Child(nsBind2, "bind"); b != nil {
		if err := n.bind2(b, in); err != nil {
			return 0, err
		}
		authz.Children = nil
		authz.AppendText(n.jid.String())
		n.inlineSuccess = succ
		return xmpp.Authn | xmpp.Ready, nil
	}
	if err := n.write(s, succ.AppendXML(nil, stanza.NSClient)); err != nil {
		return 0, err
	}
	// XEP-0388 §2.6: no restart; the features for the authenticated stream
	// follow (negotiate sends them when it is called again).
	return xmpp.Authn, nil
}
