package listener

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"slices"
	"strconv"
	"strings"
	"testing"

	"mellium.im/sasl"

	"xmppbouncer/stanza"
)

func sasl2Mechs(f *stanza.Element) []string {
	var out []string
	for _, m := range f.Child(nsSASL2, "authentication").ChildrenNamed(nsSASL2, "mechanism") {
		out = append(out, m.Text())
	}
	return out
}

func cbTypesOf(f *stanza.Element) []string {
	var out []string
	for _, c := range f.Child(nsSASLCB, "sasl-channel-binding").ChildrenNamed(nsSASLCB, "channel-binding") {
		out = append(out, c.Get("type"))
	}
	return out
}

// TestSCRAMPlusExporterWithMellium: SCRAM-SHA-256-PLUS and SCRAM-SHA-1-PLUS
// with tls-exporter on TLS 1.3, driven by mellium's SCRAM client (an
// implementation independent of our server), which also checks the server
// signature; the binding data of another connection is refused.
func TestSCRAMPlusExporterWithMellium(t *testing.T) {
	rec := newRecorder()
	srv := startServer(t, testConfig(t), rec)
	for _, mech := range []sasl.Mechanism{sasl.ScramSha256Plus, sasl.ScramSha1Plus} {
		c := dialS2(t, srv)
		if !slices.Contains(sasl2Mechs(c.features), mech.Name) || strings.Join(cbTypesOf(c.features), ",") != "tls-exporter,tls-server-end-point" {
			t.Fatalf("TLS 1.3 features: %s", c.features)
		}
		s := c.scramLogin(t, mech, testPassword, testUA, bind2XML, sasl.TLSState(c.tlsState()), sasl.RemoteMechanisms(mech.Name))
		if !s.Is(nsSASL2, "success") {
			t.Fatalf("%s: %s", mech.Name, s)
		}
		if b := rec.waitBound(t); b.Mechanism() != mech.Name {
			t.Fatalf("mechanism %s", b.Mechanism())
		}
		// Wrong binding data: another connection's exporter value.
		other := dialS2(t, srv)
		c = dialS2(t, srv)
		s = c.scramLogin(t, mech, testPassword, testUA, "", sasl.TLSState(other.tlsState()), sasl.RemoteMechanisms(mech.Name))
		if !isFailure(s, "not-authorized") {
			t.Fatalf("%s with another connection's binding: %s", mech.Name, s)
		}
	}
}

// scramPlusClient is a minimal SCRAM-SHA-256 client for what mellium's
// cannot send: tls-server-end-point, the 'y' flag, chosen binding data.
type scramPlusClient struct {
	gs2, cfb, nonce string
	cbData          []byte
}

func (sc *scramPlusClient) first(gs2 string) []byte {
	sc.gs2 = gs2
	sc.nonce = "fyko+d2lbbFgONRv9qkxdawL"
	sc.cfb = "n=" + testUser + ",r=" + sc.nonce
	return []byte(gs2 + sc.cfb)
}

func (sc *scramPlusClient) final(t *testing.T, serverFirst []byte) []byte {
	t.Helper()
	var r, salt string
	var iter int
	for _, a := range strings.Split(string(serverFirst), ",") {
		switch {
		case strings.HasPrefix(a, "r="):
			r = a[2:]
		case strings.HasPrefix(a, "s="):
			salt = a[2:]
		case strings.HasPrefix(a, "i="):
			iter, _ = strconv.Atoi(a[2:])
		}
	}
	s, _ := base64.StdEncoding.DecodeString(salt)
	salted, err := pbkdf2.Key(sha256.New, testPassword, s, iter, 32)
	if err != nil {
		t.Fatal(err)
	}
	without := "c=" + base64.StdEncoding.EncodeToString(append([]byte(sc.gs2), sc.cbData...)) + ",r=" + r
	auth := sc.cfb + "," + string(serverFirst) + "," + without
	mac := func(k []byte, m string) []byte { h := hmac.New(sha256.New, k); h.Write([]byte(m)); return h.Sum(nil) }
	ck := mac(salted, "Client Key")
	stored := sha256.Sum256(ck)
	sig := mac(stored[:], auth)
	for i := range ck {
		ck[i] ^= sig[i]
	}
	return []byte(without + ",p=" + base64.StdEncoding.EncodeToString(ck))
}

// run drives the exchange and returns the server's last element and the
// server-first-message.
func (c *s2conn) scramRaw(t *testing.T, mech string, sc *scramPlusClient, gs2 string) (*stanza.Element, string) {
	t.Helper()
	c.send(t, auth{mech: mech, initial: sc.first(gs2), uaID: testUA}.xml())
	ch := c.mustNext(t)
	if !ch.Is(nsSASL2, "challenge") {
		return ch, ""
	}
	sf, _ := base64.StdEncoding.DecodeString(ch.Text())
	c.send(t, `<response xmlns='urn:xmpp:sasl:2'>`+base64.StdEncoding.EncodeToString(sc.final(t, sf))+`</response>`)
	return c.mustNext(t), string(sf)
}

// TestSCRAMPlusEndpointAndDowngrades: tls-server-end-point on TLS 1.2 and
// 1.3 with the certificate's hash, refused with a wrong hash; tls-unique
// (what mellium's client uses on TLS 1.2) is not offered and refused; the
// 'y' flag while -PLUS is offered is a downgrade and fails; XEP-0474's d=
// in the server-first-message hashes exactly the advertised lists.
func TestSCRAMPlusEndpointAndDowngrades(t *testing.T) {
	srv := startServer(t, testConfig(t), newRecorder())
	endp := sha256.Sum256(testCert(t).Certificate[0])
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		c := dialS2TLS(t, srv, v)
		s, sf := c.scramRaw(t, "SCRAM-SHA-256-PLUS", &scramPlusClient{cbData: endp[:]}, "p=tls-server-end-point,,")
		if !s.Is(nsSASL2, "success") {
			t.Fatalf("TLS %x endpoint: %s", v, s)
		}
		// XEP-0474: the client recomputes d= from what it was offered.
		mechs := sasl2Mechs(c.features)
		slices.Sort(mechs)
		cbs := cbTypesOf(c.features)
		slices.Sort(cbs)
		sum := sha256.Sum256([]byte(strings.Join(mechs, ",") + "|" + strings.Join(cbs, ",")))
		if !strings.Contains(sf, ",d="+base64.StdEncoding.EncodeToString(sum[:])) {
			t.Fatalf("TLS %x: server-first %q lacks the SSDP hash of %v|%v", v, sf, mechs, cbs)
		}
		c = dialS2TLS(t, srv, v)
		if s, _ := c.scramRaw(t, "SCRAM-SHA-256-PLUS", &scramPlusClient{cbData: make([]byte, 32)}, "p=tls-server-end-point,,"); !isFailure(s, "not-authorized") {
			t.Fatalf("TLS %x wrong endpoint hash: %s", v, s)
		}
	}
	c := dialS2TLS(t, srv, tls.VersionTLS12)
	if got := strings.Join(cbTypesOf(c.features), ","); got != "tls-server-end-point" {
		t.Fatalf("TLS 1.2 channel bindings: %s", got)
	}
	// mellium's client on TLS 1.2 binds with tls-unique, which we do not offer.
	s := c.scramLogin(t, sasl.ScramSha256Plus, testPassword, testUA, "", sasl.TLSState(c.tlsState()), sasl.RemoteMechanisms("SCRAM-SHA-256-PLUS"))
	if !isFailure(s, "not-authorized") {
		t.Fatalf("tls-unique: %s", s)
	}
	// The 'y' flag: the client believes we cannot bind.
	c = dialS2(t, srv)
	if s, _ := c.scramRaw(t, "SCRAM-SHA-256", &scramPlusClient{}, "y,,"); !isFailure(s, "not-authorized") {
		t.Fatalf("'y' flag with -PLUS offered: %s", s)
	}
	// A non-PLUS mechanism with a binding, and -PLUS without one.
	if s, _ := c.scramRaw(t, "SCRAM-SHA-256", &scramPlusClient{cbData: endp[:]}, "p=tls-server-end-point,,"); !isFailure(s, "malformed-request") {
		t.Fatalf("binding on a non-PLUS mechanism: %s", s)
	}
}

// TestNoPlusWhenNotComputable: with a certificate chosen per connection
// (so its hash is not known) and TLS 1.2 (no exporter), neither -PLUS nor
// the channel-binding list is offered, and -PLUS is refused.
func TestNoPlusWhenNotComputable(t *testing.T) {
	cfg := testConfig(t)
	cert := testCert(t)
	cfg.TLS = &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil }, MinVersion: tls.VersionTLS12}
	srv := startServer(t, cfg, newRecorder())
	c := dialS2TLS(t, srv, tls.VersionTLS12)
	for _, m := range sasl2Mechs(c.features) {
		if strings.HasSuffix(m, "-PLUS") {
			t.Fatalf("offered %s without a computable binding: %s", m, c.features)
		}
	}
	if c.features.Child(nsSASLCB, "sasl-channel-binding") != nil {
		t.Fatalf("channel-binding list offered: %s", c.features)
	}
	if s, _ := c.scramRaw(t, "SCRAM-SHA-256-PLUS", &scramPlusClient{}, "p=tls-server-end-point,,"); !isFailure(s, "invalid-mechanism") {
		t.Fatalf("-PLUS not offered: %s", s)
	}
	// Without -PLUS on offer, 'y' is right and plain SCRAM works.
	c = dialS2TLS(t, srv, tls.VersionTLS12)
	if s, _ := c.scramRaw(t, "SCRAM-SHA-256", &scramPlusClient{}, "y,,"); !s.Is(nsSASL2, "success") {
		t.Fatalf("'y' without -PLUS offered: %s", s)
	}
}
