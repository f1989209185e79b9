package listener

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mellium.im/sasl"

	"xmppbouncer/config"
)

func TestHashPasswordFormatAndCheck(t *testing.T) {
	h, err := HashPassword(testPassword)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(h, "$")
	if len(parts) != 5 || parts[0] != "scram" {
		t.Fatalf("hash %q", h)
	}
	c, err := ParseCredentials(h)
	if err != nil {
		t.Fatal(err)
	}
	if c.iterations < minIterations {
		t.Fatalf("iterations %d", c.iterations)
	}
	// The stored keys are the RFC 5802 SaltedPassword, as mellium's SCRAM
	// client derives it.
	if !bytes.Equal(c.sha1, sasl.SCRAMSaltPassword(sha1.New, []byte(testPassword), c.salt, c.iterations)) ||
		!bytes.Equal(c.sha256, sasl.SCRAMSaltPassword(sha256.New, []byte(testPassword), c.salt, c.iterations)) {
		t.Fatal("stored keys are not the SCRAM salted passwords")
	}
	if !c.checkPassword([]byte(testPassword)) || c.checkPassword([]byte(testPassword+" ")) || c.checkPassword(nil) {
		t.Fatal("checkPassword verdicts wrong")
	}
	h2, _ := HashPassword(testPassword)
	if h2 == h {
		t.Fatal("two hashes of one password share a salt")
	}
	if _, err := HashPassword(""); err == nil {
		t.Fatal("empty password hashed")
	}
}

func TestParseCredentialsRejects(t *testing.T) {
	good, _ := HashPassword("pw")
	p := strings.Split(good, "$")
	for name, h := range map[string]string{
		"empty":        "",
		"prefix":       "bcrypt$" + strings.Join(p[1:], "$"),
		"few parts":    strings.Join(p[:4], "$"),
		"iterations":   "scram$100$" + strings.Join(p[2:], "$"),
		"not a number": "scram$many$" + strings.Join(p[2:], "$"),
		"salt":         "scram$" + p[1] + "$!!!$" + strings.Join(p[3:], "$"),
		"sha1 length":  "scram$" + p[1] + "$" + p[2] + "$" + p[4] + "$" + p[4],
	} {
		if _, err := ParseCredentials(h); err == nil {
			t.Errorf("%s: %q accepted", name, h)
		}
	}
}

func TestPlainCredentialsNormalisePassword(t *testing.T) {
	// RFC 8265 OpaqueString maps non-ASCII spaces to U+0020, as SASLprep did.
	c := PlainCredentials("pass\u00a0word")
	if !c.checkPassword([]byte("pass word")) {
		t.Fatal("no-break space not mapped")
	}
}

func TestLoadOrCreateCertKeepsCert(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	c1, fp1, err := LoadOrCreateCert("", "", dir, []string{"example.org", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, generatedKey))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st, err)
	}
	if err := c1.Leaf.VerifyHostname("example.org"); err != nil {
		t.Fatal(err)
	}
	if err := c1.Leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	_, fp2, err := LoadOrCreateCert("", "", dir, []string{"other.example"})
	if err != nil || fp2 != fp1 {
		t.Fatalf("second load: fingerprint %s vs %s, %v", fp2, fp1, err)
	}
	if len(fp1) != 32*3-1 || strings.Count(fp1, ":") != 31 {
		t.Fatalf("fingerprint format %q", fp1)
	}
	// Explicit files are used as given.
	_, fp3, err := LoadOrCreateCert(filepath.Join(dir, generatedCert), filepath.Join(dir, generatedKey), "", nil)
	if err != nil || fp3 != fp1 {
		t.Fatalf("explicit files: %s %v", fp3, err)
	}
	os.Remove(filepath.Join(dir, generatedCert))
	if _, _, err := LoadOrCreateCert("", "", dir, nil); err == nil {
		t.Fatal("a key without its certificate was silently replaced")
	}
}

func TestConfigFrom(t *testing.T) {
	c := &config.Config{}
	c.Upstream.JID = "Alice@Example.org"
	c.Auth.Password = "pw"
	c.Listen.Address = "127.0.0.1:5222"
	c.Defaults()
	var logs bytes.Buffer
	lc, err := ConfigFrom(c, t.TempDir(), slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if lc.Domain != "example.org" || lc.Username != "alice" {
		t.Fatalf("domain %q user %q", lc.Domain, lc.Username)
	}
	if lc.Limits.MaxStanzaBytes != c.Limits.MaxStanzaBytes || lc.Limits.IdleTimeout != c.Limits.IdleTimeout.Duration ||
		lc.MaxConnections != c.Limits.MaxConnections || lc.AuthFailDelay != time.Second || lc.Limits.WriteTimeout == 0 {
		t.Fatalf("limits not carried over: %+v", lc)
	}
	if !lc.Creds.checkPassword([]byte("pw")) {
		t.Fatal("auth.password not used")
	}
	if !strings.Contains(logs.String(), "sha256=") {
		t.Fatalf("fingerprint not logged: %s", logs.String())
	}
	h, _ := HashPassword("hashed pw")
	c.Auth.Password, c.Auth.PasswordHash = "", h
	lc, err = ConfigFrom(c, t.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil || !lc.Creds.checkPassword([]byte("hashed pw")) {
		t.Fatalf("auth.password_hash not used: %v", err)
	}
	if _, err := New(lc, newRecorder()); err != nil {
		t.Fatalf("New rejects ConfigFrom's result: %v", err)
	}
}

// The generated certificate names each host once, even when the domain is
// localhost and both listeners are on 127.0.0.1.
func TestGeneratedCertNamesEachHostOnce(t *testing.T) {
	c := &config.Config{}
	c.Upstream.JID = "alice@localhost"
	c.Auth.Password = "pw"
	c.Listen.Address = "127.0.0.1:5222"
	c.Listen.DirectTLSAddress = "127.0.0.1:5223"
	c.Defaults()
	lc, err := ConfigFrom(c, t.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	leaf := lc.TLS.Certificates[0].Leaf
	names := append([]string{}, leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		names = append(names, ip.String())
	}
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			t.Fatalf("certificate names %q twice: %v", n, names)
		}
		seen[n] = true
	}
	if !seen["localhost"] || !seen["127.0.0.1"] {
		t.Fatalf("certificate names %v, want localhost and 127.0.0.1", names)
	}
}

// TestGeneratedCertsAreDistinct: two generated certificates never share a
// subject or a serial (a system store that trusts one must not take the
// other for it), and each names the configured domain.
func TestGeneratedCertsAreDistinct(t *testing.T) {
	var certs []*x509.Certificate
	for i := 0; i < 2; i++ {
		c, _, err := LoadOrCreateCert("", "", filepath.Join(t.TempDir(), "data"), []string{"chat.example.org", "localhost", "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, c.Leaf)
	}
	a, b := certs[0], certs[1]
	if a.Subject.String() == b.Subject.String() {
		t.Errorf("two generated certificates share the subject %q", a.Subject)
	}
	if a.SerialNumber.Cmp(b.SerialNumber) == 0 {
		t.Errorf("two generated certificates share the serial %s", a.SerialNumber)
	}
	for _, c := range certs {
		if c.Subject.CommonName != "chat.example.org" || c.Issuer.String() != c.Subject.String() {
			t.Errorf("subject %q issuer %q, want CN=chat.example.org, self-issued", c.Subject, c.Issuer)
		}
		if err := c.VerifyHostname("chat.example.org"); err != nil {
			t.Error(err)
		}
		if err := c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature); err != nil {
			t.Errorf("not self-signed: %v", err)
		}
	}
}
