package listener

import (
	"crypto/tls"
	"testing"

	goxmpp "github.com/xmppo/go-xmpp"
)

// TestGoXMPPChannelBinding: go-xmpp, an independent client that speaks
// SASL2, Bind2 and SCRAM-PLUS, logs in with SCRAM-SHA-256-PLUS using
// tls-exporter on TLS 1.3 and tls-server-end-point on TLS 1.2 (it picks
// the binding from our XEP-0440 list), and checks our server signature.
func TestGoXMPPChannelBinding(t *testing.T) {
	rec := newRecorder()
	srv := startServer(t, testConfig(t), rec)
	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		opts := goxmpp.Options{
			Host: srv.Addr().String(), User: testUser + "@" + testDomain, Password: testPassword,
			StartTLS: true, NoTLS: true, UserAgentSW: "gotest", UserAgentID: "go-" + tls.VersionName(v),
			TLSConfig: &tls.Config{InsecureSkipVerify: true, ServerName: testDomain, MaxVersion: v},
		}
		c, err := opts.NewClient()
		if err != nil {
			t.Fatalf("%s: go-xmpp login: %v", tls.VersionName(v), err)
		}
		b := rec.waitBound(t)
		if b.Mechanism() != "SCRAM-SHA-256-PLUS" || c.Mechanism != "SCRAM-SHA-256-PLUS" || b.TLS != tls.VersionName(v) || b.UserAgent().Software != "gotest" {
			t.Fatalf("%s: bound %s with %s (client says %s), user agent %+v", tls.VersionName(v), b.JID, b.Mechanism(), c.Mechanism, b.UserAgent())
		}
		if c.JID() != b.JID.String() {
			t.Fatalf("go-xmpp thinks it is %s, bound %s", c.JID(), b.JID)
		}
		c.Close()
	}
}
