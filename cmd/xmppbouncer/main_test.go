package main

import (
	"bytes"
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"xmppbouncer/listener"
)

// result is what one run of the command produced.
type result struct {
	code           int
	stdout, stderr string
}

func runWith(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var out, errw bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out, &errw)
	return result{code, out.String(), errw.String()}
}

func (r result) want(t *testing.T, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, code, r.stdout, r.stderr)
	}
}

func writeConfig(t testing.TB, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "xmppbouncer.toml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const goodConfig = `
[upstream]
jid = "alice@example.org"
password = "up"
address = "xmpp.example.org:5223"
tls = "direct"

[listen]
address = "127.0.0.1:15222"
direct_tls_address = "127.0.0.1:15223"

[auth]
password = "local"

[[rooms]]
jid = "Room@conference.example.org"
autojoin = true

[[rooms]]
jid = "other@conference.example.org"
nick = "al"
`

func TestVersion(t *testing.T) {
	r := runWith(t, "", "-version")
	r.want(t, 0)
	// The version, then Go's and SQLite's: what a bug report needs.
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 || lines[0] != "xmppbouncer "+version ||
		!strings.HasPrefix(lines[1], runtime.Version()+" ") ||
		!regexp.MustCompile(`^SQLite 3\.\d+\.\d+$`).MatchString(lines[2]) {
		t.Errorf("stdout %q, want the version, the Go version and the SQLite version", r.stdout)
	}
}

func TestHelp(t *testing.T) {
	for _, arg := range []string{"-help", "-h", "--help"} {
		r := runWith(t, "", arg)
		r.want(t, 0)
		all := r.stdout + r.stderr
		for _, w := range []string{"Usage:", "check-config", "hash-password", "-config", "-version"} {
			if !strings.Contains(all, w) {
				t.Errorf("%s output does not mention %q:\n%s", arg, w, all)
			}
		}
	}
}

func TestNoConfig(t *testing.T) {
	r := runWith(t, "")
	r.want(t, 2)
	if !strings.Contains(r.stderr, "-config FILE is required") {
		t.Errorf("stderr %q does not say -config is required", r.stderr)
	}
}

func TestUnknownFlag(t *testing.T) {
	r := runWith(t, "", "-confg", "x.toml")
	r.want(t, 2)
	if !strings.Contains(r.stderr, "-confg") {
		t.Errorf("stderr %q does not name the unknown flag", r.stderr)
	}
	runWith(t, "", "check-config", "-bogus").want(t, 2)
}

// oneLine checks that stderr is a single line that mentions every word.
func oneLine(t *testing.T, stderr string, words ...string) {
	t.Helper()
	if strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, "\n") {
		t.Errorf("stderr is not one line: %q", stderr)
	}
	for _, w := range words {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr %q does not mention %q", stderr, w)
		}
	}
}

func TestBadConfig(t *testing.T) {
	bad := writeConfig(t, strings.Replace(goodConfig, `tls = "direct"`, `tls = "tls"`, 1))
	missing := filepath.Join(t.TempDir(), "absent.toml")
	unknown := writeConfig(t, goodConfig+"\n[presence]\ndetached = \"away\"\n")
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"run", []string{"-config", bad}, []string{"upstream.tls"}},
		{"check-config", []string{"check-config", "-config", bad}, []string{"upstream.tls"}},
		{"unknown key", []string{"-config", unknown}, []string{"presence.detached"}},
		{"missing file", []string{"-config", missing}, []string{missing}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runWith(t, "", tc.args...)
			r.want(t, 2)
			oneLine(t, r.stderr, tc.want...)
			if r.stdout != "" {
				t.Errorf("stdout %q, want nothing", r.stdout)
			}
		})
	}
}

func TestCheckConfig(t *testing.T) {
	p := writeConfig(t, goodConfig)
	r := runWith(t, "", "check-config", "-config", p)
	r.want(t, 0)
	for _, w := range []string{
		p + " is valid",
		"alice@example.org via xmpp.example.org:5223 (direct)",
		`resource "bouncer"`,
		"STARTTLS on 127.0.0.1:15222",
		"direct TLS on 127.0.0.1:15223",
		"self-signed",
		"room: room@conference.example.org as alice (autojoin true)",
		"room: other@conference.example.org as al (autojoin false)",
	} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("check-config output lacks %q:\n%s", w, r.stdout)
		}
	}

	r = runWith(t, "", "check-config")
	r.want(t, 2)
	oneLine(t, r.stderr, "-config")
}

func TestHashPassword(t *testing.T) {
	for _, in := range []string{"secret\n", "secret\r\n", "secret"} {
		r := runWith(t, in, "hash-password")
		r.want(t, 0)
		line := strings.TrimSuffix(r.stdout, "\n")
		if !strings.HasPrefix(line, "scram$") || strings.Contains(line, "\n") {
			t.Fatalf("stdout %q, want one line starting scram$", r.stdout)
		}
		if _, err := listener.ParseCredentials(line); err != nil {
			t.Fatalf("listener.ParseCredentials(%q): %v", line, err)
		}
		checkSalted(t, line, "secret")

		// The printed hash is what auth.password_hash takes.
		cfg := strings.Replace(goodConfig, `password = "local"`, `password_hash = "`+line+`"`, 1)
		runWith(t, "", "check-config", "-config", writeConfig(t, cfg)).want(t, 0)
	}
	a := runWith(t, "secret\n", "hash-password")
	b := runWith(t, "secret\n", "hash-password")
	if a.stdout == b.stdout {
		t.Error("two hashes of one password are equal: the salt is not random")
	}
}

// checkSalted recomputes the SCRAM SaltedPassword (RFC 5802 §3,
// Hi() = PBKDF2) of password from the hash's salt and iteration count: the
// hash must be of the typed password without its line ending.
func checkSalted(t *testing.T, hash, password string) {
	t.Helper()
	f := strings.Split(hash, "$")
	if len(f) != 5 {
		t.Fatalf("hash %q has %d fields, want 5", hash, len(f))
	}
	iter, err := strconv.Atoi(f[1])
	if err != nil || iter < 4096 {
		t.Fatalf("iteration count %q, want at least 4096 (RFC 7677 §4)", f[1])
	}
	salt, err := base64.StdEncoding.DecodeString(f[2])
	if err != nil {
		t.Fatal(err)
	}
	s1, err := pbkdf2.Key(sha1.New, password, salt, iter, sha1.Size)
	if err != nil {
		t.Fatal(err)
	}
	s256, err := pbkdf2.Key(sha256.New, password, salt, iter, sha256.Size)
	if err != nil {
		t.Fatal(err)
	}
	if f[3] != base64.StdEncoding.EncodeToString(s1) || f[4] != base64.StdEncoding.EncodeToString(s256) {
		t.Errorf("hash %q is not of %q", hash, password)
	}
}

func TestHashPasswordEmpty(t *testing.T) {
	for _, in := range []string{"", "\n", "\r\n"} {
		r := runWith(t, in, "hash-password")
		r.want(t, 2)
		oneLine(t, r.stderr, "empty password")
		if r.stdout != "" {
			t.Errorf("stdin %q: stdout %q, want nothing", in, r.stdout)
		}
	}
}

// TestListenPortBusy runs the bouncer with a listening port another
// process holds: it must stop with exit 1 and name the address, not hang.
func TestListenPortBusy(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := t.TempDir()
	cfg := strings.NewReplacer(
		`address = "127.0.0.1:15222"`, `address = "`+busy.Addr().String()+`"`,
		`direct_tls_address = "127.0.0.1:15223"`, `direct_tls_address = ""`,
		`address = "xmpp.example.org:5223"`, `address = "127.0.0.1:1"`,
	).Replace(goodConfig) + "\n[storage]\npath = \"" + filepath.Join(dir, "x.db") + "\"\n"
	r := runWith(t, "", "-config", writeConfig(t, cfg))
	r.want(t, 1)
	if !strings.Contains(r.stderr, busy.Addr().String()) {
		t.Errorf("stderr does not name %s:\n%s", busy.Addr(), r.stderr)
	}
}
