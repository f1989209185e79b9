package upstream

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"xmppbouncer/listener"
	"xmppbouncer/wire"
)

// TestStreamHeaderCarriesFrom: the bouncer's stream header to the server
// names the account in from= (RFC 6120 §4.7.1) on the stream that is
// authenticated, i.e. after TLS: ejabberd offers SASL2 (XEP-0388) only
// when it knows who is logging in. A TLS endpoint in front of nothing
// records the header (no server shows what it was sent); the login then
// fails, which is not what is tested.
func TestStreamHeaderCarriesFrom(t *testing.T) {
	cert, _, err := listener.LoadOrCreateCert("", "", t.TempDir(), []string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"xmpp-client"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		r := bufio.NewReader(c)
		var b strings.Builder
		for !strings.Contains(b.String(), "<stream:stream") || !strings.HasSuffix(b.String(), ">") {
			by, err := r.ReadByte()
			if err != nil {
				break
			}
			b.WriteByte(by)
		}
		got <- b.String()
	}()
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	cfg := Config{JID: jid.MustParse("alice@localhost"), Password: "x", Address: ln.Addr().String(), TLS: TLSDirect, RootCAs: pool, Resource: "bouncer"}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	go func() { _, _, _ = Dial(ctx, cfg, wire.Options{}) }()
	select {
	case h := <-got:
		if !strings.Contains(h, "from='alice@localhost'") && !strings.Contains(h, `from="alice@localhost"`) {
			t.Fatalf("stream header after TLS lacks from=: %s", h)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no stream header")
	}
}
