package listener

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"strconv"
	"time"

	"mellium.im/xmpp"

	"xmppbouncer/stanza"
)

// XEP-0484 FAST: a client that logged in once with the password gets a
// token bound to its user-agent id, and logs in with it later in a single
// round trip with an HT mechanism (draft-schmaus-kitten-sasl-ht).

// DefaultFastTokenLifetime is how long a FAST token is valid.
const DefaultFastTokenLifetime = 30 * 24 * time.Hour

// fastTokenBytes is the random part of a token. Its text form is 80
// characters: longer than SHA-256's 64-byte block, so HMAC keys itself
// with SHA-256(token) (RFC 2104 §2). That is why the store can keep only
// the hash and still check an HT login: the token itself is never stored.
// The hash is still a login secret for HT (any verifier must be), so the
// database deserves the care it already needs for the archive.
const fastTokenBytes = 60

// HT mechanisms, by channel binding.
var fastMechs = []struct{ name, cb string }{
	{"HT-SHA-256-EXPR", cbExporter},
	{"HT-SHA-256-ENDP", cbEndpoint},
	{"HT-SHA-256-NONE", ""},
}

// FastToken is one stored FAST token: only its hash, and the device it
// belongs to.
type FastToken struct {
	Hash      []byte // SHA-256 of the token
	UserAgent string // the SASL2 user-agent id it is bound to
	Software  string
	Device    string
	Mechanism string // the HT mechanism it was issued for
	Created   time.Time
	Expires   time.Time
	LastUsed  time.Time // zero: never used
	Count     uint64    // the highest XEP-0484 count seen
}

// FastTokenStore keeps FAST tokens across restarts (sqlite.DB implements
// it). Calls come from connection goroutines, never the bouncer loop.
type FastTokenStore interface {
	// FastTokens lists the tokens of a user agent, or all when it is "".
	FastTokens(ctx context.Context, userAgent string) ([]FastToken, error)
	AddFastToken(ctx context.Context, t FastToken) error
	// UseFastToken records a login with the token at count (0: the client
	// sent none); false when count is not above the last one seen, i.e. a
	// replay, or the token is gone.
	UseFastToken(ctx context.Context, hash []byte, count uint64, at time.Time) (bool, error)
	DeleteFastToken(ctx context.Context, hash []byte) (bool, error)
	// DeleteFastTokens revokes every token of a user agent.
	DeleteFastTokens(ctx context.Context, userAgent string) (int64, error)
	// DeleteExpiredFastTokens removes the tokens expired at now.
	DeleteExpiredFastTokens(ctx context.Context, now time.Time) (int64, error)
}

// fastMechanisms are the HT mechanisms offered on this connection.
func (n *negotiation) fastMechanisms() []string {
	if n.srv.cfg.FastTokens == nil {
		return nil
	}
	var out []string
	for _, m := range fastMechs {
		if m.cb == "" || n.hasCB(m.cb) {
			out = append(out, m.name)
		}
	}
	return out
}

func (n *negotiation) fastOffered(mech string) bool {
	for _, m := range n.fastMechanisms() {
		if m == mech {
			return true
		}
	}
	return false
}

func fastCB(mech string) string {
	for _, m := range fastMechs {
		if m.name == mech {
			return m.cb
		}
	}
	return ""
}

// htStepper checks one HT initial response: authcid NUL HMAC(token,
// "Initiator" || cb-data), and answers HMAC(token, "Responder" || cb-data).
type htStepper struct {
	n     *negotiation
	ctx   context.Context
	mech  string
	cb    []byte
	count uint64
}

var errFAST = errors.New("listener: FAST authentication failed")

func (n *negotiation) newFASTStepper(_ *xmpp.Session, name string, el *stanza.Element) (stepper, string, string) {
	if !n.fastOffered(name) {
		return nil, "invalid-mechanism", "mechanism " + name + " is not offered"
	}
	var cb []byte
	if t := fastCB(name); t != "" {
		var ok bool
		if cb, ok = n.cbData(t); !ok {
			return nil, "invalid-mechanism", "mechanism " + name + " is not offered"
		}
	}
	if n.ua.ID == "" {
		return nil, "malformed-request", "FAST needs a user-agent id"
	}
	h := &htStepper{n: n, ctx: n.ctx, mech: name, cb: cb}
	if f := el.Child(nsFAST, "fast"); f != nil && f.Has("count") {
		c, err := strconv.ParseUint(f.Get("count"), 10, 63)
		if err != nil {
			return nil, "malformed-request", "the FAST count is not a number"
		}
		h.count = c
	}
	return h, "", ""
}

func htMAC(key []byte, label string, cb []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(label))
	m.Write(cb)
	return m.Sum(nil)
}

func (h *htStepper) Step(in []byte) (bool, []byte, error) {
	n := h.n
	i := bytes.IndexByte(in, 0)
	if i < 0 || len(in)-i-1 != sha256.Size {
		n.failCond, n.failReason = "malformed-request", "HT initial response is not authcid NUL HMAC"
		return false, nil, errFAST
	}
	user, mac := in[:i], in[i+1:]
	tokens, err := n.srv.cfg.FastTokens.FastTokens(h.ctx, n.ua.ID)
	if err != nil {
		n.srv.log.Error("listener: reading FAST tokens", "err", err)
		n.failCond, n.failReason = "temporary-auth-failure", "token store failed"
		return false, nil, errFAST
	}
	var match *FastToken
	for i := range tokens {
		t := &tokens[i]
		if t.Mechanism != h.mech {
			continue
		}
		if subtle.ConstantTimeCompare(htMAC(t.Hash, "Initiator", h.cb), mac) == 1 {
			match = t
		}
	}
	now := time.Now()
	switch {
	case !n.srv.userOK(string(user)):
		n.failReason = "unknown username"
		return false, nil, errFAST
	case match == nil:
		n.failReason = "no such token for this user agent and mechanism"
		return false, nil, errFAST
	case !now.Before(match.Expires):
		_, _ = n.srv.cfg.FastTokens.DeleteFastToken(h.ctx, match.Hash)
		n.failCond, n.failReason = "credentials-expired", "token expired"
		return false, nil, errFAST
	}
	ok, err := n.srv.cfg.FastTokens.UseFastToken(h.ctx, match.Hash, h.count, now)
	if err != nil {
		n.srv.log.Error("listener: recording FAST token use", "err", err)
		n.failCond, n.failReason = "temporary-auth-failure", "token store failed"
		return false, nil, errFAST
	}
	if !ok {
		n.failReason = "replayed FAST count"
		return false, nil, errFAST
	}
	n.fastHash = match.Hash
	n.fastToken = match
	return false, htMAC(match.Hash, "Responder", h.cb), nil
}

// fastAfterSuccess handles the FAST parts of a successful <authenticate/>:
// invalidation, a requested token, and rotation. It returns the <token/>
// for the <success/>, or nil.
func (n *negotiation) fastAfterSuccess(ctx context.Context, el *stanza.Element) *stanza.Element {
	store := n.srv.cfg.FastTokens
	if store == nil || n.ua.ID == "" {
		return nil
	}
	f := el.Child(nsFAST, "fast")
	if f != nil && (f.Get("invalidate") == "true" || f.Get("invalidate") == "1") && n.fastHash != nil {
		// XEP-0484 §3.5: log in once more and drop the token.
		if _, err := store.DeleteFastTokens(ctx, n.ua.ID); err != nil {
			n.srv.log.Error("listener: invalidating FAST tokens", "err", err)
		}
		return nil
	}
	mech := ""
	if rt := el.Child(nsFAST, "request-token"); rt != nil {
		mech = rt.Get("mechanism") // checked in newStepper
	}
	now := time.Now()
	life := n.srv.cfg.FastTokenLifetime
	if used := n.fastToken; used != nil {
		// A newer token replaces the older ones once it is used: the
		// client has got it.
		if old, err := store.FastTokens(ctx, n.ua.ID); err == nil {
			for _, t := range old {
				if !bytes.Equal(t.Hash, used.Hash) && t.Created.Before(used.Created) {
					_, _ = store.DeleteFastToken(ctx, t.Hash)
				}
			}
		}
		// Rotation: past half its life, a token is replaced.
		if mech == "" && used.Expires.Sub(now) < life/2 {
			mech = used.Mechanism
		}
	}
	if mech == "" {
		return nil
	}
	var raw [fastTokenBytes]byte
	_, _ = rand.Read(raw[:])
	token := base64.RawURLEncoding.EncodeToString(raw[:])
	sum := sha256.Sum256([]byte(token))
	t := FastToken{Hash: sum[:], UserAgent: n.ua.ID, Software: n.ua.Software, Device: n.ua.Device,
		Mechanism: mech, Created: now, Expires: now.Add(life)}
	if n.fastToken == nil {
		// A password login with a new token: the device starts over.
		if _, err := store.DeleteFastTokens(ctx, n.ua.ID); err != nil {
			n.srv.log.Error("listener: replacing FAST tokens", "err", err)
		}
	}
	// One expiry rule for the table: whenever a token is issued, the
	// expired ones (of devices that never came back) go.
	if _, err := store.DeleteExpiredFastTokens(ctx, now); err != nil {
		n.srv.log.Error("listener: pruning FAST tokens", "err", err)
	}
	if err := store.AddFastToken(ctx, t); err != nil {
		n.srv.log.Error("listener: storing a FAST token", "err", err)
		return nil
	}
	return stanza.New(nsFAST, "token", "expiry", t.Expires.UTC().Format(time.RFC3339), "token", token)
}
