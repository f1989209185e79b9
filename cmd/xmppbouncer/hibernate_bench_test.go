package main

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"xmppbouncer/internal/testserver"
)

// smDropClient logs in to the bouncer at addr (direct TLS, PLAIN) as
// resource res, sends initial presence if presence is set, enables
// XEP-0198 resumption and then drops the TCP connection without closing
// its stream: the session hibernates. It returns the resumption id.
func smDropClient(addr, domain, user, res string, presence bool) (string, error) {
	raw, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return "", err
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(30 * time.Second))
	c := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"xmpp-client"}})
	var in bytes.Buffer
	buf := make([]byte, 8192)
	until := func(want string) error {
		for !strings.Contains(in.String(), want) {
			n, err := c.Read(buf)
			in.Write(buf[:n])
			if err != nil {
				return fmt.Errorf("waiting for %q: %v (got %q)", want, err, in.String())
			}
		}
		s := in.String()
		rest := s[strings.Index(s, want)+len(want):]
		in.Reset()
		in.WriteString(rest)
		return nil
	}
	header := fmt.Sprintf(`<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' to='%s'>`, domain)
	steps := []struct{ send, want string }{
		{header, "</stream:features>"},
		{`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>` + base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00local")) + `</auth>`, "success"},
		{header, "</stream:features>"},
		{`<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>` + res + `</resource></bind></iq>`, "</iq>"},
	}
	for _, s := range steps {
		if _, err := c.Write([]byte(s.send)); err != nil {
			return "", err
		}
		if err := until(s.want); err != nil {
			return "", err
		}
	}
	out := `<enable xmlns='urn:xmpp:sm:3' resume='true'/>`
	if presence {
		out = `<presence/>` + out
	}
	if _, err := c.Write([]byte(out)); err != nil {
		return "", err
	}
	if err := until("enabled"); err != nil {
		return "", err
	}
	m := regexp.MustCompile(`id=['"]([^'"]+)['"]`).FindStringSubmatch(in.String())
	if m == nil {
		// The attributes may have come in the previous read.
		return "", nil
	}
	return m[1], nil
}

func rssKB(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return -1
}

// BenchmarkHibernatedSessionsRSS measures the figure of issue 17: the
// bouncer's RSS (the real binary in front of the real Prosody) as 1,000
// clients of the account each bind, send presence, enable resumption and
// drop TCP. Run with -benchtime 1x; it reports the RSS at 0, 250, 500, 750
// and 1,000 sessions.
func BenchmarkHibernatedSessionsRSS(b *testing.B) {
	srv := testserver.Start(b)
	dir := b.TempDir()
	cfg := filepath.Join(dir, "b.toml")
	body := fmt.Sprintf(`
[upstream]
jid = %q
password = %q
address = %q
tls = "starttls"
ca_file = %q

[listen]
address = "127.0.0.1:0"
direct_tls_address = "127.0.0.1:0"

[auth]
password = "local"

[storage]
path = %q

[limits]
max_connections = 4000
max_connections_per_address = 4000
max_unauthenticated_per_address = 4000
queue_len = 8192
`, srv.JID(testserver.Alice), testserver.Password(testserver.Alice), srv.Addr, srv.CAFile, filepath.Join(dir, "x.db"))
	// XB_MAX_HIBERNATED=n raises both caps, to see the growth without them.
	if n := os.Getenv("XB_MAX_HIBERNATED"); n != "" {
		body += "max_hibernated = " + n + "\nmax_hibernated_per_address = " + n + "\n"
	}
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		b.Fatal(err)
	}
	for range b.N {
		p := startBinary(b, "-config", cfg)
		addr := p.waitDirectTLS(b)
		const total = 1000
		var figs []string
		pid := p.cmd.Process.Pid
		figs = append(figs, fmt.Sprintf("0:%dMB", rssKB(pid)/1024))
		start := time.Now()
		for i := 1; i <= total; i++ {
			if _, err := smDropClient(addr, srv.Domain, testserver.Alice, fmt.Sprintf("r%04d", i), os.Getenv("XB_NO_PRESENCE") == ""); err != nil {
				b.Fatalf("client %d: %v\n%s", i, err, tail(p.stderr(), 2000))
			}
			if i%250 == 0 {
				time.Sleep(500 * time.Millisecond) // let the fan-out settle
				figs = append(figs, fmt.Sprintf("%d:%dMB", i, rssKB(pid)/1024))
			}
		}
		b.Logf("RSS by hibernated sessions: %s (%v)", strings.Join(figs, " "), time.Since(start).Round(time.Second))
		b.ReportMetric(float64(rssKB(pid))/1024, "RSS-MB@1000")
		p.stop(b)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
