package listener

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"mellium.im/sasl"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"

	"xmppbouncer/stanza"
)

// offeredMechanisms in order of preference. No -PLUS variant: mellium's SCRAM
// server has no channel binding (it panics on one), and offering a mechanism
// we later drop makes Conversations report a downgrade attack.
var offeredMechanisms = []sasl.Mechanism{sasl.ScramSha256, sasl.ScramSha1, sasl.Plain}

const (
	// maxAuthFailures: RFC 6120 §6.4.5 asks servers to allow a few retries
	// (2 to 5); after this many failures the stream is closed.
	maxAuthFailures = 3
	maxFailDelay    = 10 * time.Second
	failWindow      = 15 * time.Minute
	maxFailTracked  = 4096
)

// authenticate runs one SASL exchange (RFC 6120 §6.4) that el starts. A
// failed exchange returns no error and no state, so the client may retry on
// the same stream; transport and protocol errors end the stream.
func (n *negotiation) authenticate(ctx context.Context, s *xmpp.Session, el *stanza.Element) (xmpp.SessionState, io.ReadWriter, error) {
	switch el.Name.Local {
	case "auth":
	case "abort":
		// RFC 6120 §6.4.4: an abort is answered with <aborted/>.
		return 0, nil, n.write(s, saslElement("failure", "aborted"))
	default:
		return 0, nil, n.write(s, saslElement("failure", "malformed-request"))
	}
	name := el.Get("mechanism")
	var mech sasl.Mechanism
	for _, m := range n.srv.mechanisms {
		if m.Name == name {
			mech = m
		}
	}
	if mech.Name == "" {
		return 0, nil, n.authFailed(ctx, s, name, "invalid-mechanism", "mechanism not offered")
	}
	n.failCond, n.failReason = "", ""
	neg := sasl.NewServer(mech, n.checkPlain, sasl.SaltedCredentials(n.scramCredentials))

	payload, present, ok := decodePayload(el.Text())
	if !ok {
		return 0, nil, n.authFailed(ctx, s, name, "incorrect-encoding", "initial response is not base64")
	}
	if !present {
		// RFC 6120 §6.4.2: no initial response; ask for it with an empty
		// challenge.
		if err := n.write(s, []byte(`<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>`)); err != nil {
			return 0, nil, err
		}
		var done bool
		var err error
		if payload, done, err = n.readResponse(ctx, s, name); done || err != nil {
			return 0, nil, err
		}
	}
	for {
		more, resp, err := step(neg, payload)
		if err != nil {
			cond, reason := n.stepFailure()
			return 0, nil, n.authFailed(ctx, s, name, cond, reason)
		}
		if !more {
			// RFC 6120 §6.4.6: success carries the final server data (the
			// SCRAM server signature, RFC 5802 §3).
			if err := n.write(s, saslData("success", resp)); err != nil {
				return 0, nil, err
			}
			n.mechanism = name
			n.authed = true
			if n.authenticated != nil {
				n.authenticated()
			}
			// The per-address failure count stays: a success between
			// guesses must not reset the delay (it decays after failWindow).
			return xmpp.Authn, s.Conn(), nil
		}
		if err := n.write(s, saslData("challenge", resp)); err != nil {
			return 0, nil, err
		}
		var done bool
		if payload, done, err = n.readResponse(ctx, s, name); done || err != nil {
			return 0, nil, err
		}
	}
}

// readResponse reads the client's <response/> to a challenge. done means
// the exchange ended (aborted or failed) and its reply has been sent.
func (n *negotiation) readResponse(ctx context.Context, s *xmpp.Session, mech string) (payload []byte, done bool, err error) {
	el, err := n.nextElement(s)
	if err != nil {
		return nil, true, err
	}
	n.steps++
	switch {
	case el.Is(stanza.NSSASL, "response"):
		payload, _, ok := decodePayload(el.Text())
		if !ok {
			return nil, true, n.authFailed(ctx, s, mech, "incorrect-encoding", "response is not base64")
		}
		return payload, false, nil
	case el.Is(stanza.NSSASL, "abort"):
		return nil, true, n.write(s, saslElement("failure", "aborted"))
	default:
		return nil, true, &stanza.StreamError{Condition: "policy-violation", Text: "expected a SASL response"}
	}
}

// authFailed answers a failed exchange after the per-IP delay, and closes
// the stream once the client has used up its retries.
func (n *negotiation) authFailed(ctx context.Context, s *xmpp.Session, mech, cond, reason string) error {
	return n.authFailedWith(ctx, s, mech, cond, reason, saslElement("failure", cond))
}

// authFailedWith is authFailed with the failure element to send (legacy
// SASL or SASL2).
func (n *negotiation) authFailedWith(ctx context.Context, s *xmpp.Session, mech, cond, reason string, failure []byte) error {
	n.authFailures++
	n.srv.authFailures.Add(1)
	delay := n.srv.fails.fail(n.ip)
	n.srv.log.Warn("listener: client failed authentication",
		"remote", n.remote, "mechanism", mech, "condition", cond, "reason", reason, "delay", delay)
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
	if err := n.write(s, failure); err != nil {
		return err
	}
	if n.authFailures >= maxAuthFailures {
		return &stanza.StreamError{Condition: "policy-violation", Text: "too many failed authentication attempts"}
	}
	return nil
}

// checkPlain is the PLAIN verdict (RFC 4616 §2).
func (n *negotiation) checkPlain(neg *sasl.Negotiator) bool {
	user, password, authz := neg.Credentials()
	if !n.srv.authzOK(string(authz)) {
		n.failCond, n.failReason = "invalid-authzid", "authorization identity is not the account"
		return false
	}
	// Derive even for a wrong username, so both cost the same.
	pwOK := n.srv.cfg.Creds.checkPassword(password)
	switch {
	case !n.srv.userOK(string(user)):
		n.failReason = "unknown username"
		return false
	case !pwOK:
		n.failReason = "wrong password"
		return false
	}
	return true
}

var saslnameUnescaper = strings.NewReplacer("=2C", ",", "=3D", "=")

// scramCredentials is the SCRAM server's credential lookup. For a wrong
// username it returns a random key, so the exchange fails at the proof like
// a wrong password does and the two cannot be told apart.
func (n *negotiation) scramCredentials(user, authz []byte, mech string) ([]byte, []byte, int64, error) {
	if !n.srv.authzOK(saslnameUnescaper.Replace(string(authz))) {
		n.failCond, n.failReason = "invalid-authzid", "authorization identity is not the account"
		return nil, nil, 0, sasl.ErrAuthn
	}
	c := n.srv.cfg.Creds
	key := c.salted(mech)
	if !n.srv.userOK(string(user)) {
		n.failReason = "unknown username"
		key = make([]byte, len(key))
		_, _ = rand.Read(key)
	} else {
		n.failReason = "wrong password"
	}
	return c.salt, key, int64(c.iterations), nil
}

// step runs one SASL step. The mechanism parses client data; should it ever
// panic on some input, that is one failed exchange, not a dead process.
func step(neg *sasl.Negotiator, in []byte) (more bool, resp []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			more, resp, err = false, nil, fmt.Errorf("sasl mechanism panicked: %v", r)
		}
	}()
	return neg.Step(in)
}

// decodePayload decodes SASL element text (RFC 6120 §6.4.2): no text means
// no data was sent, "=" means empty data.
func decodePayload(text string) (data []byte, present, ok bool) {
	text = strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, text)
	switch text {
	case "":
		return nil, false, true
	case "=":
		return nil, true, true
	}
	b, err := base64.StdEncoding.DecodeString(text)
	if err != nil {
		return nil, true, false
	}
	return b, true, true
}

func saslElement(name, cond string) []byte {
	return stanza.New(stanza.NSSASL, name).Append(stanza.New(stanza.NSSASL, cond)).AppendXML(nil, stanza.NSClient)
}

func saslData(name string, data []byte) []byte {
	el := stanza.New(stanza.NSSASL, name)
	if len(data) > 0 {
		el.AppendText(base64.StdEncoding.EncodeToString(data))
	} else if name == "challenge" {
		el.AppendText("=")
	}
	return el.AppendXML(nil, stanza.NSClient)
}

// userOK reports whether a SASL username names the account: its localpart
// after PRECIS normalisation (RFC 7622 §3.3), or the bare JID itself.
func (s *Server) userOK(user string) bool {
	if strings.Contains(user, "@") {
		j, err := jid.Parse(user)
		return err == nil && j.Resourcepart() == "" && j.Equal(s.bare)
	}
	j, err := jid.New(user, s.domain.Domainpart(), "")
	return err == nil && j.Localpart() == s.username
}

// authzOK: an authorization identity must be absent or the account itself
// (RFC 6120 §6.3.8); a local client cannot act as anyone else.
func (s *Server) authzOK(authz string) bool {
	if authz == "" {
		return true
	}
	j, err := jid.Parse(authz)
	return err == nil && j.Equal(s.bare)
}

// failTracker remembers recent SASL failures per remote IP, to slow down
// guessing without holding up anyone else.
type failTracker struct {
	base time.Duration
	mu   sync.Mutex
	m    map[string]failRecord
}

type failRecord struct {
	n    int
	last time.Time
}

func newFailTracker(base time.Duration) *failTracker {
	return &failTracker{base: base, m: make(map[string]failRecord)}
}

// fail records a failure from ip and returns how long to hold the reply:
// base, doubling with each recent failure, at most maxFailDelay.
func (t *failTracker) fail(ip string) time.Duration {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.m) >= maxFailTracked {
		for k, r := range t.m {
			if now.Sub(r.last) > failWindow {
				delete(t.m, k)
			}
		}
		if len(t.m) >= maxFailTracked {
			clear(t.m)
		}
	}
	r := t.m[ip]
	if now.Sub(r.last) > failWindow {
		r.n = 0
	}
	r.n++
	r.last = now
	t.m[ip] = r
	d := t.base
	for i := 1; i < r.n && d < maxFailDelay; i++ {
		d *= 2
	}
	return min(d, maxFailDelay)
}

// stepFailure is the condition and log reason of a failed SASL step: what
// the credential check recorded, or a wrong password.
func (n *negotiation) stepFailure() (cond, reason string) {
	cond, reason = n.failCond, n.failReason
	if cond == "" {
		cond = "not-authorized"
	}
	if reason == "" {
		reason = "wrong password or malformed exchange"
	}
	return cond, reason
}
