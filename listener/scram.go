package listener

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"hash"
	"slices"
	"strconv"
	"strings"

	"mellium.im/xmpp"
)

// The server side of SCRAM (RFC 5802, RFC 7677) with channel binding
// (RFC 5802 §6: tls-exporter per RFC 9266, tls-server-end-point per RFC
// 5929) and XEP-0474 downgrade protection. mellium's SCRAM server has no
// channel binding, so SASL2 uses this one for every SCRAM mechanism; the
// legacy path keeps mellium's, unchanged.

var errSCRAM = errors.New("listener: SCRAM authentication failed")

type scramServer struct {
	n     *negotiation
	name  string
	hash  func() hash.Hash
	plus  bool
	ssdp  string // XEP-0474 d= value
	state int

	gs2Header   []byte
	cbType      string
	clientFirst []byte // client-first-message-bare
	serverFirst []byte
	nonce       string
	salted      []byte
	userOK      bool
}

// newSCRAMPlus starts a SCRAM-*-PLUS exchange; nil when the mechanism is
// not offered on this connection (no binding can be computed).
func (n *negotiation) newSCRAMPlus(_ *xmpp.Session, name string) stepper {
	if len(n.cbTypes()) == 0 || !slices.Contains(n.sasl2Mechanisms(), name) {
		return nil
	}
	return n.scramFor(name)
}

// newSCRAM starts a SCRAM exchange without channel binding; nil for a
// mechanism that is not SCRAM.
func (n *negotiation) newSCRAM(_ *xmpp.Session, name string) stepper {
	if !strings.HasPrefix(name, "SCRAM-") || strings.HasSuffix(name, "-PLUS") {
		return nil
	}
	return n.scramFor(name)
}

func (n *negotiation) scramFor(name string) stepper {
	var h func() hash.Hash
	switch strings.TrimSuffix(name, "-PLUS") {
	case "SCRAM-SHA-256":
		h = sha256.New
	case "SCRAM-SHA-1":
		h = sha1.New
	default:
		return nil
	}
	return &scramServer{n: n, name: name, hash: h, plus: strings.HasSuffix(name, "-PLUS"), ssdp: n.ssdp(h)}
}

// ssdp is XEP-0474's d= value: the hash of the offered SASL2 mechanisms
// and channel-binding types, each sorted and joined with commas, the two
// lists joined with '|' (as Prosody's mod_sasl_ssdp computes it).
func (n *negotiation) ssdp(h func() hash.Hash) string {
	mechs := slices.Clone(n.sasl2Mechanisms())
	slices.Sort(mechs)
	s := strings.Join(mechs, ",")
	if cb := slices.Clone(n.cbTypes()); len(cb) > 0 {
		slices.Sort(cb)
		s += "|" + strings.Join(cb, ",")
	}
	w := h()
	w.Write([]byte(s))
	return base64.StdEncoding.EncodeToString(w.Sum(nil))
}

func (sc *scramServer) fail(cond, reason string) (bool, []byte, error) {
	sc.n.failCond, sc.n.failReason = cond, reason
	sc.state = -1
	return false, nil, errSCRAM
}

func (sc *scramServer) Step(in []byte) (bool, []byte, error) {
	switch sc.state {
	case 0:
		return sc.first(in)
	case 1:
		return sc.final(in)
	}
	return sc.fail("malformed-request", "SCRAM exchange already over")
}

// first reads client-first-message (RFC 5802 §7):
// gs2-cbind-flag "," [authzid] "," [reserved-mext ","] username "," nonce ["," extensions]
func (sc *scramServer) first(in []byte) (bool, []byte, error) {
	n := sc.n
	msg := string(in)
	flag, rest, ok := strings.Cut(msg, ",")
	if !ok {
		return sc.fail("malformed-request", "SCRAM: no GS2 header")
	}
	switch {
	case flag == "n":
		if sc.plus {
			return sc.fail("malformed-request", "SCRAM-PLUS without channel binding")
		}
	case flag == "y":
		// RFC 5802 §6: the client could bind but thinks we cannot. We do
		// offer -PLUS whenever a binding is computable: a downgrade.
		if len(n.cbTypes()) > 0 {
			return sc.fail("not-authorized", "SCRAM: client saw no channel binding, but it is offered (downgrade?)")
		}
	case strings.HasPrefix(flag, "p="):
		sc.cbType = flag[2:]
		if !sc.plus {
			return sc.fail("malformed-request", "SCRAM: channel binding requested with a non-PLUS mechanism")
		}
		if !n.hasCB(sc.cbType) {
			return sc.fail("not-authorized", "SCRAM: unsupported channel binding type "+sc.cbType)
		}
	default:
		return sc.fail("malformed-request", "SCRAM: bad GS2 flag")
	}
	authz, bare, ok := strings.Cut(rest, ",")
	if !ok {
		return sc.fail("malformed-request", "SCRAM: bad GS2 header")
	}
	if authz != "" {
		if !strings.HasPrefix(authz, "a=") {
			return sc.fail("malformed-request", "SCRAM: bad authzid")
		}
		a, ok := unescapeSASLName(authz[2:])
		if !ok || !n.srv.authzOK(a) {
			return sc.fail("invalid-authzid", "authorization identity is not the account")
		}
	}
	sc.gs2Header = in[:len(msg)-len(bare)]
	sc.clientFirst = []byte(bare)
	attrs := strings.Split(bare, ",")
	if len(attrs) < 2 || !strings.HasPrefix(attrs[0], "n=") || !strings.HasPrefix(attrs[1], "r=") || len(attrs[1]) < 3 {
		// Also refuses the reserved m= (RFC 5802 §5.1).
		return sc.fail("malformed-request", "SCRAM: bad client-first-message")
	}
	user, ok := unescapeSASLName(attrs[0][2:])
	if !ok {
		return sc.fail("malformed-request", "SCRAM: bad username")
	}
	cnonce := attrs[1][2:]
	for _, r := range cnonce {
		if r < 0x21 || r > 0x7e || r == ',' {
			return sc.fail("malformed-request", "SCRAM: bad nonce")
		}
	}
	creds := n.srv.cfg.Creds
	sc.salted = creds.salted(sc.name)
	sc.userOK = n.srv.userOK(user)
	if !sc.userOK {
		// A random key fails at the proof, like a wrong password.
		sc.salted = make([]byte, len(sc.salted))
		_, _ = rand.Read(sc.salted)
	}
	var snonce [18]byte
	_, _ = rand.Read(snonce[:])
	sc.nonce = cnonce + base64.RawStdEncoding.EncodeToString(snonce[:])
	sf := "r=" + sc.nonce + ",s=" + base64.StdEncoding.EncodeToString(creds.salt) + ",i=" + strconv.Itoa(creds.iterations)
	if sc.ssdp != "" {
		sf += ",d=" + sc.ssdp
	}
	sc.serverFirst = []byte(sf)
	sc.state = 1
	return true, sc.serverFirst, nil
}

// final reads client-final-message: c=… ,r=… [,ext] ,p=…
func (sc *scramServer) final(in []byte) (bool, []byte, error) {
	n := sc.n
	i := bytes.LastIndex(in, []byte(",p="))
	if i < 0 {
		return sc.fail("malformed-request", "SCRAM: no proof")
	}
	without, proofB64 := in[:i], in[i+3:]
	attrs := strings.Split(string(without), ",")
	if len(attrs) < 2 || !strings.HasPrefix(attrs[0], "c=") || attrs[1] != "r="+sc.nonce {
		return sc.fail("malformed-request", "SCRAM: bad client-final-message or nonce")
	}
	cbind, err := base64.StdEncoding.DecodeString(attrs[0][2:])
	if err != nil {
		return sc.fail("malformed-request", "SCRAM: channel binding is not base64")
	}
	want := sc.gs2Header
	if sc.cbType != "" {
		data, ok := n.cbData(sc.cbType)
		if !ok {
			return sc.fail("not-authorized", "SCRAM: channel binding data unavailable")
		}
		want = append(slices.Clone(sc.gs2Header), data...)
	}
	if subtle.ConstantTimeCompare(cbind, want) != 1 {
		return sc.fail("not-authorized", "SCRAM: channel binding data does not match this connection")
	}
	proof, err := base64.StdEncoding.DecodeString(string(proofB64))
	if err != nil || len(proof) != sc.hash().Size() {
		return sc.fail("malformed-request", "SCRAM: bad proof")
	}
	auth := make([]byte, 0, len(sc.clientFirst)+len(sc.serverFirst)+len(without)+2)
	auth = append(append(append(append(append(auth, sc.clientFirst...), ','), sc.serverFirst...), ','), without...)
	clientKey := sc.mac(sc.salted, []byte("Client Key"))
	h := sc.hash()
	h.Write(clientKey)
	storedKey := h.Sum(nil)
	sig := sc.mac(storedKey, auth)
	expected := make([]byte, len(sig))
	for i := range sig {
		expected[i] = clientKey[i] ^ sig[i]
	}
	if subtle.ConstantTimeCompare(expected, proof) != 1 || !sc.userOK {
		if sc.userOK {
			return sc.fail("not-authorized", "wrong password")
		}
		return sc.fail("not-authorized", "unknown username")
	}
	serverKey := sc.mac(sc.salted, []byte("Server Key"))
	sc.state = 2
	return false, []byte("v=" + base64.StdEncoding.EncodeToString(sc.mac(serverKey, auth))), nil
}

func (sc *scramServer) mac(key, msg []byte) []byte {
	m := hmac.New(sc.hash, key)
	m.Write(msg)
	return m.Sum(nil)
}

// unescapeSASLName undoes RFC 5802 §5.1 saslname escaping; '=' must start
// =2C or =3D.
func unescapeSASLName(s string) (string, bool) {
	if !strings.Contains(s, "=") {
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '=' {
			b.WriteByte(s[i])
			continue
		}
		switch {
		case strings.HasPrefix(s[i:], "=2C"):
			b.WriteByte(',')
		case strings.HasPrefix(s[i:], "=3D"):
			b.WriteByte('=')
		default:
			return "", false
		}
		i += 2
	}
	return b.String(), true
}
