package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// minimal is the smallest valid file: an account, its password and the
// local password.
const minimal = `
[upstream]
jid = "alice@example.org"
password = "up"

[auth]
password = "local"
`

// write puts body in a fresh config file and returns its path.
func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "xmppbouncer.toml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// upstreamWith is a complete file whose [upstream] section has extra lines.
func upstreamWith(lines string) string {
	return "[upstream]\njid = \"alice@example.org\"\n" + lines + "\n[auth]\npassword = \"local\"\n"
}

func TestExampleLoads(t *testing.T) {
	b, err := os.ReadFile("../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	// The example ships with the local password empty, so that the user
	// must choose one; it is the only uncommented `password = ""` line.
	const empty = "\npassword = \"\"\n"
	if n := strings.Count(string(b), empty); n != 1 {
		t.Fatalf("config.example.toml has %d lines %q, want 1", n, strings.TrimSpace(empty))
	}
	example := strings.Replace(string(b), empty, "\npassword = \"demo\"\n", 1)

	c, err := Load(write(t, example))
	if err != nil {
		t.Fatalf("config.example.toml with auth.password set: %v", err)
	}
	if c.Upstream.JID != "alice@example.org" || c.Auth.Password != "demo" {
		t.Errorf("upstream.jid %q, auth.password %q", c.Upstream.JID, c.Auth.Password)
	}
	if len(c.Rooms) != 1 || c.Rooms[0].JID != "room@conference.example.org" || !c.Rooms[0].Autojoin {
		t.Errorf("rooms = %+v", c.Rooms)
	}

	// Without the edit the example must say what is missing.
	_, err = Load(write(t, string(b)))
	wantKey(t, err, "auth.password_hash")
}

// wantKey fails unless err is a *Error for key whose text names the key.
func wantKey(t *testing.T, err error, key string) {
	t.Helper()
	if err == nil {
		t.Fatalf("loaded without error, want an error about %s", key)
	}
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %q is a %T, want *config.Error for %s", err, err, key)
	}
	if ce.Key != key || !strings.Contains(err.Error(), key) {
		t.Fatalf("error %q has key %q, want %q", err, ce.Key, key)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error %q spans lines; check-config prints it as one", err)
	}
}

func TestValidationErrorsNameTheKey(t *testing.T) {
	tests := []struct {
		name string
		body string
		key  string
	}{
		{"jid missing", "[upstream]\npassword = \"x\"\n[auth]\npassword = \"y\"\n", "upstream.jid"},
		{"jid invalid", "[upstream]\njid = \"al ice@example.org\"\npassword = \"x\"\n[auth]\npassword = \"y\"\n", "upstream.jid"},
		{"jid without localpart", "[upstream]\njid = \"example.org\"\npassword = \"x\"\n[auth]\npassword = \"y\"\n", "upstream.jid"},
		{"jid with resource", "[upstream]\njid = \"alice@example.org/phone\"\npassword = \"x\"\n[auth]\npassword = \"y\"\n", "upstream.jid"},
		{"upstream password missing", upstreamWith(""), "upstream.password"},
		{"tls unknown", upstreamWith("password = \"x\"\ntls = \"ssl\""), "upstream.tls"},
		{"plaintext without address", upstreamWith("password = \"x\"\ntls = \"insecure-plaintext\""), "upstream.tls"},
		{"plaintext to a remote host", upstreamWith("password = \"x\"\ntls = \"insecure-plaintext\"\naddress = \"example.org:5222\""), "upstream.tls"},
		{"plaintext to a public IP", upstreamWith("password = \"x\"\ntls = \"insecure-plaintext\"\naddress = \"192.0.2.1:5222\""), "upstream.tls"},
		{"address without port", upstreamWith("password = \"x\"\naddress = \"example.org\""), "upstream.address"},
		{"ca_file absent", upstreamWith("password = \"x\"\nca_file = \"/nonexistent/ca.pem\""), "upstream.ca_file"},
		{"password and password_file", upstreamWith("password = \"x\"\npassword_file = \"/nonexistent\""), "upstream.password_file"},
		{"password_file absent", upstreamWith("password_file = \"/nonexistent/pw\""), "upstream.password_file"},
		{"listen address bad", minimal + "[listen]\naddress = \"localhost\"\n", "listen.address"},
		{"direct tls address bad", minimal + "[listen]\ndirect_tls_address = \"127.0.0.1:99999\"\n", "listen.direct_tls_address"},
		{"cert without key", minimal + "[listen]\ncert_file = \"/etc/hostname\"\n", "listen.cert_file"},
		{"key without cert", minimal + "[listen]\nkey_file = \"/etc/hostname\"\n", "listen.cert_file"},
		{"cert and key absent", minimal + "[listen]\ncert_file = \"/nonexistent/c.pem\"\nkey_file = \"/etc/hostname\"\n", "listen.cert_file"},
		{"auth missing", "[upstream]\njid = \"alice@example.org\"\npassword = \"x\"\n", "auth.password_hash"},
		{"auth both", upstreamWith("password = \"x\"") + "password_hash = \"scram$1$2$3$4\"\n", "auth.password"},
		{"auth hash not ours", "[upstream]\njid = \"a@b.c\"\npassword = \"x\"\n[auth]\npassword_hash = \"$2y$10$abc\"\n", "auth.password_hash"},
		{"detached_show bad", minimal + "[presence]\ndetached_show = \"busy\"\n", "presence.detached_show"},
		{"retention abc", minimal + "[history]\nretention = \"abc\"\n", "history.retention"},
		{"retention zero days", minimal + "[history]\nretention = \"0d\"\n", "history.retention"},
		{"retention negative", minimal + "[history]\nretention = \"-5h\"\n", "history.retention"},
		{"default_replay negative", minimal + "[history]\ndefault_replay = -1\n", "history.default_replay"},
		{"mam_max_page negative", minimal + "[history]\nmam_max_page = -1\n", "history.mam_max_page"},
		{"max_stanza_bytes tiny", minimal + "[limits]\nmax_stanza_bytes = 100\n", "limits.max_stanza_bytes"},
		{"max_connections negative", minimal + "[limits]\nmax_connections = -1\n", "limits.max_connections"},
		{"log level bad", minimal + "[log]\nlevel = \"verbose\"\n", "log.level"},
		{"metrics address bad", minimal + "[metrics]\naddress = \"9162\"\n", "metrics.address"},
		{"metrics remote without allow_remote", minimal + "[metrics]\naddress = \"0.0.0.0:9162\"\n", "metrics.address"},
		{"metrics on a public name", minimal + "[metrics]\naddress = \"example.org:9162\"\n", "metrics.address"},
		{"room not a JID", minimal + "[[rooms]]\njid = \"conference.example.org\"\n", "rooms[0].jid"},
		{"room with nick in JID", minimal + "[[rooms]]\njid = \"r@conference.example.org/alice\"\n", "rooms[0].jid"},
		{"room twice", minimal + "[[rooms]]\njid = \"r@conference.example.org\"\n[[rooms]]\njid = \"s@conference.example.org\"\n[[rooms]]\njid = \"r@conference.example.org\"\n", "rooms[2].jid"},
		// Room JIDs compare after PRECIS case mapping (RFC 7622 §3.3).
		{"room twice in other case", minimal + "[[rooms]]\njid = \"R@Conference.example.org\"\n[[rooms]]\njid = \"r@conference.example.org\"\n", "rooms[1].jid"},
		{"unknown key", "[upstream]\njid = \"alice@example.org\"\njidd = \"x\"\npassword = \"x\"\n[auth]\npassword = \"y\"\n", "upstream.jidd"},
		{"unknown section", minimal + "[bogus]\nx = 1\n", "bogus"},
		{"unknown room key", minimal + "[[rooms]]\njid = \"r@conference.example.org\"\nautojion = true\n", "rooms.autojion"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(write(t, tc.body))
			wantKey(t, err, tc.key)
		})
	}
}

func TestDecodeErrorsNameLineAndKey(t *testing.T) {
	tests := []struct {
		name string
		body string
		want []string
	}{
		{"syntax error", minimal + "\n[history]\nretention = \"365d\n", []string{"line 10"}},
		{"unquoted string", "[upstream]\njid = alice@example.org\n", []string{"line 2", "upstream.jid"}},
		{"bad duration", upstreamWith("password = \"x\"\nping_interval = \"soon\""), []string{"line 4", "upstream.ping_interval", "soon"}},
		{"wrong type", upstreamWith("password = \"x\"\nqueue_limit = \"ten\""), []string{"line 4", "upstream.queue_limit"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := write(t, tc.body)
			_, err := Load(p)
			if err == nil {
				t.Fatal("loaded without error")
			}
			for _, w := range append(tc.want, p) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestMissingFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "nope.toml")
	_, err := Load(p)
	if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "config.example.toml") {
		t.Fatalf("error %v, want one naming %s and pointing at config.example.toml", err, p)
	}
}

func TestInsecurePlaintextOnLoopback(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:5222", "[::1]:5222", "localhost:5222"} {
		c, err := Load(write(t, upstreamWith("password = \"x\"\ntls = \"insecure-plaintext\"\naddress = \""+addr+"\"")))
		if err != nil {
			t.Errorf("insecure-plaintext to %s: %v", addr, err)
			continue
		}
		if c.Upstream.TLS != "insecure-plaintext" || c.Upstream.Address != addr {
			t.Errorf("upstream = %+v", c.Upstream)
		}
	}
}

func TestPasswordFile(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("s3cret with spaces\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// os.WriteFile honours the umask; set the mode explicitly.
	if err := os.Chmod(pw, 0o644); err != nil {
		t.Fatal(err)
	}
	body := upstreamWith("password_file = \"" + pw + "\"")
	_, err := Load(write(t, body))
	wantKey(t, err, "upstream.password_file")
	if !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("error %q does not say how to fix it", err)
	}

	if err := os.Chmod(pw, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(write(t, body))
	if err != nil {
		t.Fatalf("mode 0600: %v", err)
	}
	if c.Upstream.Password != "s3cret with spaces" {
		t.Errorf("password from file = %q, want %q (trailing newline dropped)", c.Upstream.Password, "s3cret with spaces")
	}

	if err := os.WriteFile(pw, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(write(t, body))
	wantKey(t, err, "upstream.password_file")
}

func TestRetention(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"365d", 365 * 24 * time.Hour},
		{"72h", 72 * time.Hour},
		{"90m", 90 * time.Minute},
		{"0", 0},
	} {
		c, err := Load(write(t, minimal+"[history]\nretention = \""+tc.in+"\"\n"))
		if err != nil {
			t.Errorf("retention %q: %v", tc.in, err)
			continue
		}
		if c.History.RetentionPeriod != tc.want {
			t.Errorf("retention %q = %v, want %v", tc.in, c.History.RetentionPeriod, tc.want)
		}
	}
}

func TestDefaults(t *testing.T) {
	c, err := Load(write(t, minimal+"[[rooms]]\njid = \"Room@Conference.Example.org\"\n[[rooms]]\njid = \"other@conference.example.org\"\nnick = \"al\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		key       string
		got, want any
	}{
		{"upstream.tls", c.Upstream.TLS, "starttls"},
		{"upstream.resource", c.Upstream.Resource, "bouncer"},
		{"upstream.ping_interval", c.Upstream.PingInterval.Duration, 60 * time.Second},
		{"upstream.ping_timeout", c.Upstream.PingTimeout.Duration, 30 * time.Second},
		{"upstream.queue_limit", c.Upstream.QueueLimit, 1000},
		{"upstream.iq_timeout", c.Upstream.IQTimeout.Duration, 2 * time.Minute},
		{"listen.address", c.Listen.Address, "127.0.0.1:5222"},
		{"listen.direct_tls_address", c.Listen.DirectTLSAddress, ""},
		{"storage.path", c.Storage.Path, "xmppbouncer.db"},
		{"presence.detached_show", c.Presence.DetachedShow, "away"},
		{"history.retention", c.History.RetentionPeriod, time.Duration(0)},
		{"history.default_replay", c.History.DefaultReplay, 20},
		{"history.mam_max_page", c.History.MAMMaxPage, 250},
		{"history.catchup_start", c.History.CatchupStart.Duration, 24 * time.Hour},
		{"limits.max_stanza_bytes", c.Limits.MaxStanzaBytes, int64(256 << 10)},
		{"limits.max_depth", c.Limits.MaxDepth, 64},
		{"limits.idle_timeout", c.Limits.IdleTimeout.Duration, 15 * time.Minute},
		{"limits.keepalive", c.Limits.KeepAlive.Duration, 60 * time.Second},
		{"limits.max_connections", c.Limits.MaxConnections, 64},
		{"limits.queue_len", c.Limits.QueueLen, 1024},
		{"limits.auth_fail_delay", c.Limits.AuthFailDelay.Duration, time.Second},
		{"limits.ack_after", c.Limits.AckAfter, 10},
		{"limits.ack_delay", c.Limits.AckDelay.Duration, 5 * time.Second},
		{"limits.resume_timeout", c.Limits.ResumeTimeout.Duration, 24 * time.Hour},
		{"limits.resume_queue", c.Limits.ResumeQueue, 10000},
		{"log.level", c.Log.Level, "info"},
		{"rooms[0].jid", c.Rooms[0].JID, "room@conference.example.org"},
		{"rooms[0].nick", c.Rooms[0].Nick, "alice"},
		{"rooms[1].nick", c.Rooms[1].Nick, "al"},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.key, ch.got, ch.want)
		}
	}
}

func TestExplicitValuesKept(t *testing.T) {
	c, err := Load(write(t, `
[upstream]
jid = "alice@example.org"
password = "x"
resource = "home"
tls = "direct"
address = "xmpp.example.org:5223"
ping_interval = "15s"
[listen]
address = "0.0.0.0:5333"
direct_tls_address = "[::]:5334"
[auth]
password_hash = "scram$4096$c2FsdA==$a$b"
[limits]
max_stanza_bytes = 4096
max_connections = 3
idle_timeout = "1m"
[log]
level = "debug"
`))
	if err != nil {
		t.Fatal(err)
	}
	u, l := c.Upstream, c.Limits
	if u.Resource != "home" || u.TLS != "direct" || u.PingInterval.Duration != 15*time.Second ||
		c.Listen.Address != "0.0.0.0:5333" || c.Listen.DirectTLSAddress != "[::]:5334" ||
		l.MaxStanzaBytes != 4096 || l.MaxConnections != 3 || l.IdleTimeout.Duration != time.Minute ||
		c.Log.Level != "debug" {
		t.Errorf("explicit values overridden: %+v %+v %+v", u, c.Listen, l)
	}
}

// A config file holding a password warns when others can read it, as
// password_file is refused then.
func TestReadableConfigWithPasswordWarns(t *testing.T) {
	p := write(t, minimal)
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Warnings) != 0 {
		t.Fatalf("mode 0600 warned: %v", c.Warnings)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	c, err = Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "chmod 600") {
		t.Fatalf("mode 0644 with an inline password: warnings %v", c.Warnings)
	}
}

func TestSplitQueueLimits(t *testing.T) {
	c, err := Load(write(t, minimal))
	if err != nil {
		t.Fatal(err)
	}
	if c.Upstream.OutboxLimit != 1000 || c.Upstream.SendQueue != 1000 {
		t.Fatalf("defaults: outbox_limit %d, send_queue %d", c.Upstream.OutboxLimit, c.Upstream.SendQueue)
	}
	// The old key still sets both.
	c, err = Load(write(t, upstreamWith("password = \"up\"\nqueue_limit = 77")))
	if err != nil {
		t.Fatal(err)
	}
	if c.Upstream.OutboxLimit != 77 || c.Upstream.SendQueue != 77 {
		t.Fatalf("queue_limit = 77: outbox_limit %d, send_queue %d", c.Upstream.OutboxLimit, c.Upstream.SendQueue)
	}
	c, err = Load(write(t, upstreamWith("password = \"up\"\nqueue_limit = 77\noutbox_limit = 5\nsend_queue = 3000")))
	if err != nil {
		t.Fatal(err)
	}
	if c.Upstream.OutboxLimit != 5 || c.Upstream.SendQueue != 3000 {
		t.Fatalf("new keys: outbox_limit %d, send_queue %d", c.Upstream.OutboxLimit, c.Upstream.SendQueue)
	}
}

func TestMetricsAddress(t *testing.T) {
	for _, body := range []string{
		minimal,
		minimal + "[metrics]\naddress = \"127.0.0.1:9162\"\n",
		minimal + "[metrics]\naddress = \"[::1]:9162\"\n",
		minimal + "[metrics]\naddress = \"0.0.0.0:9162\"\nallow_remote = true\n",
	} {
		if _, err := Load(write(t, body)); err != nil {
			t.Errorf("%q: %v", body, err)
		}
	}
}
