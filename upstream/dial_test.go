package upstream

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"xmppbouncer/config"
	"xmppbouncer/internal/testserver"
	"xmppbouncer/stanza"
	"xmppbouncer/wire"
)

// logBuf collects log output for assertions.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func testConfig(t testing.TB, s *testserver.Server, user string) Config {
	t.Helper()
	pool, err := LoadCAFile(s.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	return Config{
		JID:      jid.MustParse(s.JID(user)),
		Password: testserver.Password(user),
		Address:  s.Addr,
		TLS:      TLSStartTLS,
		RootCAs:  pool,
		Resource: "bouncer",
		Logger:   slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

func slogText(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func dial(t testing.TB, cfg Config) (*wire.Conn, jid.JID, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, bound, err := Dial(ctx, cfg, wire.Options{})
	if err == nil {
		t.Cleanup(func() { c.Close(nil); <-c.Done() })
	}
	return c, bound, err
}

// mechanismUsed dials with a debug logger and returns the SASL mechanism
// that was logged.
func mechanismUsed(t *testing.T, cfg Config) string {
	t.Helper()
	var lb logBuf
	cfg.Logger = slog.New(slog.NewTextHandler(&lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if _, _, err := dial(t, cfg); err != nil {
		t.Fatalf("Dial: %v", err)
	}
	for _, f := range strings.Fields(lb.String()) {
		if m, ok := strings.CutPrefix(f, "mechanism="); ok {
			return m
		}
	}
	t.Fatalf("no mechanism logged in %q", lb.String())
	return ""
}

func TestDialBindsConfiguredResource(t *testing.T) {
	s := testserver.Start(t)
	for _, mode := range []string{TLSStartTLS, TLSDirect} {
		t.Run(mode, func(t *testing.T) {
			cfg := testConfig(t, s, testserver.Alice)
			cfg.TLS = mode
			if mode == TLSDirect {
				cfg.Address = s.DirectTLSAddr
			}
			c, bound, err := dial(t, cfg)
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			if want := "alice@localhost/bouncer"; bound.String() != want {
				t.Fatalf("bound %s, want %s", bound, want)
			}
			cs := c.Session().ConnectionState()
			if !cs.HandshakeComplete {
				t.Fatal("the connection is not encrypted")
			}
			if mode == TLSDirect && cs.NegotiatedProtocol != "" && cs.NegotiatedProtocol != "xmpp-client" {
				t.Fatalf("ALPN %q", cs.NegotiatedProtocol)
			}
			// The session works: the server answers a ping.
			if !c.Send(stanza.MustParse(`<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`)) {
				t.Fatal("Send failed")
			}
			got := make(chan *stanza.Element, 1)
			go c.Read(func(el *stanza.Element) {
				if el.ID() == "p1" {
					got <- el
				}
			})
			select {
			case el := <-got:
				if el.Type() != "result" {
					t.Fatalf("ping answer %s", el)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no answer to ping")
			}
		})
	}
}

func TestDialWrongPassword(t *testing.T) {
	s := testserver.Start(t)
	cfg := testConfig(t, s, testserver.Alice)
	cfg.Password = "wrong"
	_, _, err := dial(t, cfg)
	var ae *AuthError
	if !errors.As(err, &ae) || ae.Condition != "not-authorized" {
		t.Fatalf("err = %v, want an AuthError not-authorized", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "rejected the credentials for alice@localhost") {
		t.Fatalf("message %q does not say the credentials were rejected", msg)
	}
}

func TestDialCertificateVerification(t *testing.T) {
	s := testserver.Start(t)
	for _, mode := range []string{TLSStartTLS, TLSDirect} {
		cfg := testConfig(t, s, testserver.Bob)
		cfg.TLS = mode
		if mode == TLSDirect {
			cfg.Address = s.DirectTLSAddr
		}
		cfg.RootCAs = nil // the system roots do not know the test CA
		_, _, err := dial(t, cfg)
		var ve *TLSVerifyError
		if !errors.As(err, &ve) {
			t.Fatalf("%s without the CA: err = %v, want a TLSVerifyError", mode, err)
		}
		for _, want := range []string{"verification failed", "ca_file", "tls_insecure_skip_verify"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: message %q lacks %q", mode, err, want)
			}
		}
		cfg.InsecureSkipVerify = true
		if _, _, err := dial(t, cfg); err != nil {
			t.Fatalf("%s with tls_insecure_skip_verify: %v", mode, err)
		}
	}
}

func TestDialConnectionRefusedNamesAddress(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s := testserver.Start(t)
	cfg := testConfig(t, s, testserver.Alice)
	cfg.Address = addr
	_, _, err = dial(t, cfg)
	if err == nil || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("err = %v, want connection refused naming %s", err, addr)
	}
}

func TestSASLMechanismChoice(t *testing.T) {
	s := testserver.Start(t)
	cfg := testConfig(t, s, testserver.Alice)
	// Prosody 0.12 offers -PLUS only with tls-unique, which TLS 1.3 lacks.
	if m := mechanismUsed(t, cfg); m != "SCRAM-SHA-1" {
		t.Errorf("TLS 1.3: mechanism %s, want SCRAM-SHA-1", m)
	}
	cfg.tlsMaxVersion = tls.VersionTLS12
	if m := mechanismUsed(t, cfg); m != "SCRAM-SHA-1-PLUS" {
		t.Errorf("TLS 1.2: mechanism %s, want SCRAM-SHA-1-PLUS", m)
	}
}

func TestPlaintextRefusesPLAINButUsesSCRAM(t *testing.T) {
	s := testserver.StartWith(t, testserver.Options{AllowPlaintext: true})
	cfg := testConfig(t, s, testserver.Alice)
	cfg.TLS = TLSPlaintext
	if m := mechanismUsed(t, cfg); m != "SCRAM-SHA-1" {
		t.Errorf("mechanism %s, want SCRAM-SHA-1", m)
	}

	// A server that would take the password in the clear.
	s2 := testserver.StartWith(t, testserver.Options{AllowPlaintext: true,
		Extra: `allow_unencrypted_plain_auth = true
disable_sasl_mechanisms = { "SCRAM-SHA-1", "SCRAM-SHA-1-PLUS", "DIGEST-MD5" }`})
	cfg = testConfig(t, s2, testserver.Alice)
	cfg.TLS = TLSPlaintext
	_, _, err := dial(t, cfg)
	if err == nil || !strings.Contains(err.Error(), "in the clear") {
		t.Fatalf("err = %v, want a refusal to send the password in the clear", err)
	}
	// The same server over TLS may have PLAIN.
	cfg.TLS = TLSStartTLS
	if m := mechanismUsed(t, cfg); m != "PLAIN" {
		t.Errorf("over TLS: mechanism %s, want PLAIN", m)
	}
}

func TestTargets(t *testing.T) {
	srv := map[string][]*net.SRV{
		"xmpps-client": {{Target: "tls.example.org.", Port: 443}},
		"xmpp-client":  {{Target: "xmpp.example.org.", Port: 5222}, {Target: ".", Port: 0}},
	}
	lookup := func(_ context.Context, service, proto, name string) (string, []*net.SRV, error) {
		if name != "example.org" || proto != "tcp" {
			t.Errorf("lookup %s %s %s", service, proto, name)
		}
		if r, ok := srv[service]; ok {
			return "", r, nil
		}
		return "", nil, errors.New("no such record")
	}
	cfg := Config{JID: jid.MustParse("a@example.org")}
	got := cfg.targets(context.Background(), lookup)
	want := []target{{"tls.example.org:443", true}, {"xmpp.example.org:5222", false}, {"example.org:5222", false}}
	if len(got) != len(want) {
		t.Fatalf("targets %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("targets %v, want %v", got, want)
		}
	}
	cfg.TLS = TLSDirect
	delete(srv, "xmpps-client")
	if got := cfg.targets(context.Background(), lookup); len(got) != 1 || got[0] != (target{"example.org:5223", true}) {
		t.Fatalf("direct without SRV: %v", got)
	}
	cfg.Address = "127.0.0.1:5"
	if got := cfg.targets(context.Background(), lookup); len(got) != 1 || got[0] != (target{"127.0.0.1:5", true}) {
		t.Fatalf("explicit address: %v", got)
	}
}

func TestConfigFrom(t *testing.T) {
	s := testserver.Start(t)
	u := config.Upstream{JID: "alice@localhost", Password: "alicepw", Address: s.DirectTLSAddr, TLS: "direct",
		CAFile: s.CAFile, Resource: "res", QueueLimit: 7}
	u.PingInterval.Duration = time.Minute
	cfg, err := ConfigFrom(&u)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.QueueLen != 7 || cfg.PingInterval != time.Minute || cfg.Resource != "res" {
		t.Fatalf("fields not carried over: %+v", cfg)
	}
	// The CA file is what lets verification succeed.
	if _, bound, err := dial(t, cfg); err != nil || bound.String() != "alice@localhost/res" {
		t.Fatalf("Dial with the config's CA: %v (%s)", err, bound)
	}
	u.CAFile = s.Dir + "/prosody.cfg.lua" // not PEM
	if _, err := ConfigFrom(&u); err == nil || !strings.Contains(err.Error(), "upstream.ca_file") {
		t.Fatalf("bad ca_file: err = %v", err)
	}
}

func TestDialWrongTLSModeIsExplained(t *testing.T) {
	s := testserver.Start(t)
	cfg := testConfig(t, s, testserver.Alice)
	cfg.TLS = TLSPlaintext
	if _, _, err := dial(t, cfg); err == nil || !strings.Contains(err.Error(), "requires TLS") {
		t.Errorf("plaintext to a TLS-only server: %v", err)
	}
	cfg.TLS = TLSDirect
	if _, _, err := dial(t, cfg); err == nil || !strings.Contains(err.Error(), "starttls") {
		t.Errorf("direct TLS to a STARTTLS port: %v", err)
	}
}
