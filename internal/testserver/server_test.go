package testserver

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// features opens a direct-TLS stream verified against CAFile and returns
// what the server sends up to its stream features.
func features(t *testing.T, s *Server) string {
	t.Helper()
	pem, err := os.ReadFile(s.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("CAFile holds no certificate")
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", s.DirectTLSAddr,
		&tls.Config{ServerName: s.MUC, RootCAs: pool})
	if err != nil {
		t.Fatalf("direct TLS to %s with CAFile (name %s): %v", s.DirectTLSAddr, s.MUC, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(`<?xml version='1.0'?><stream:stream to='localhost' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>`)); err != nil {
		t.Fatal(err)
	}
	var got []byte
	buf := make([]byte, 4096)
	for !strings.Contains(string(got), "</stream:features>") {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("reading features: %v (got %q)", err, got)
		}
		got = append(got, buf[:n]...)
	}
	return string(got)
}

func TestStartStopRestart(t *testing.T) {
	t0 := time.Now()
	s := Start(t)
	t.Logf("started in %v", time.Since(t0))
	if f := features(t, s); !strings.Contains(f, "<mechanism>SCRAM-SHA-1</mechanism>") || !strings.Contains(f, "<mechanism>PLAIN</mechanism>") {
		t.Fatalf("features lack SCRAM-SHA-1/PLAIN: %s", f)
	}
	t0 = time.Now()
	s.Stop(t)
	t.Logf("stopped in %v", time.Since(t0))
	if accepts(s.Addr) {
		t.Fatalf("%s still accepts after Stop", s.Addr)
	}
	t0 = time.Now()
	s.Start(t)
	t.Logf("restarted in %v", time.Since(t0))
	if !accepts(s.Addr) {
		t.Fatal("no listener after restart")
	}
	s.Kill(t)
	if accepts(s.DirectTLSAddr) {
		t.Fatal("still accepts after Kill")
	}
	s.Start(t)
	features(t, s)
}

func TestServersAreIndependent(t *testing.T) {
	a, b := Start(t), Start(t)
	if a.Addr == b.Addr || a.Dir == b.Dir {
		t.Fatalf("two servers share %s / %s", a.Addr, a.Dir)
	}
	for _, u := range []string{Alice, Bob, Carol} {
		if _, err := os.Stat(a.Dir + "/data/localhost/accounts/" + u + ".dat"); err != nil {
			t.Errorf("account %s missing: %v", u, err)
		}
	}
	a.Register(t, "dave", "davepw")
	if _, err := os.Stat(a.Dir + "/data/localhost/accounts/dave.dat"); err != nil {
		t.Fatalf("Register left no account file: %v", err)
	}
	if _, err := os.Stat(b.Dir + "/data/localhost/accounts/dave.dat"); err == nil {
		t.Fatal("Register on one server changed another")
	}
}
