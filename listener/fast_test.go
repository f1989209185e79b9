package listener

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"xmppbouncer/sqlite"
	"xmppbouncer/stanza"
	"xmppbouncer/store"
)

// sqliteTokens is the listener's token store over the real database, as
// bouncer.FastTokenStore does it (the listener cannot import bouncer).
type sqliteTokens struct{ db *sqlite.DB }

func (s sqliteTokens) FastTokens(ctx context.Context, ua string) ([]FastToken, error) {
	ts, err := s.db.FastTokens(ctx, ua)
	out := make([]FastToken, len(ts))
	for i, t := range ts {
		out[i] = FastToken(t)
	}
	return out, err
}
func (s sqliteTokens) AddFastToken(ctx context.Context, t FastToken) error {
	return s.db.AddFastToken(ctx, store.FastToken(t))
}
func (s sqliteTokens) UseFastToken(ctx context.Context, h []byte, c uint64, at time.Time) (bool, error) {
	return s.db.UseFastToken(ctx, h, c, at)
}
func (s sqliteTokens) DeleteFastToken(ctx context.Context, h []byte) (bool, error) {
	return s.db.DeleteFastToken(ctx, h)
}
func (s sqliteTokens) DeleteFastTokens(ctx context.Context, ua string) (int64, error) {
	return s.db.DeleteFastTokens(ctx, ua)
}
func (s sqliteTokens) DeleteExpiredFastTokens(ctx context.Context, now time.Time) (int64, error) {
	return s.db.DeleteExpiredFastTokens(ctx, now)
}

func openTokenDB(t *testing.T) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "fast.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func fastServer(t *testing.T, db *sqlite.DB, lifetime time.Duration) (*Server, *recorder) {
	t.Helper()
	cfg := testConfig(t)
	cfg.FastTokens = sqliteTokens{db}
	cfg.FastTokenLifetime = lifetime
	rec := newRecorder()
	return startServer(t, cfg, rec), rec
}

// htResponse is the HT initial response Conversations sends
// (HashedToken.java): username NUL HMAC-SHA-256(token, "Initiator" || cb).
func htResponse(user, token string, cb []byte) []byte {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("Initiator"))
	m.Write(cb)
	return append([]byte(user+"\x00"), m.Sum(nil)...)
}

func htServerFinal(token string, cb []byte) []byte {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("Responder"))
	m.Write(cb)
	return m.Sum(nil)
}

// fastLogin logs in with a token and returns the server's answer; on
// success it checks the server's HMAC in <additional-data/>.
func (c *s2conn) fastLogin(t *testing.T, mech, token, uaID string, cb []byte, extra string) *stanza.Element {
	t.Helper()
	c.send(t, auth{mech: mech, initial: htResponse(testUser, token, cb), uaID: uaID, extra: extra}.xml())
	s := c.mustNext(t)
	if s.Is(nsSASL2, "success") {
		got, _ := base64.StdEncoding.DecodeString(s.ChildText(nsSASL2, "additional-data"))
		if !bytes.Equal(got, htServerFinal(token, cb)) {
			t.Fatalf("server HMAC wrong: %s", s)
		}
	}
	return s
}

func tokenOf(t *testing.T, s *stanza.Element) string {
	t.Helper()
	tok := s.Child(nsFAST, "token")
	if !s.Is(nsSASL2, "success") || tok == nil || tok.Get("token") == "" {
		t.Fatalf("want success with a token: %s", s)
	}
	if _, err := time.Parse(time.RFC3339, tok.Get("expiry")); err != nil {
		t.Fatalf("expiry: %s", tok)
	}
	return tok.Get("token")
}

func isFailure(s *stanza.Element, cond string) bool {
	return s.Is(nsSASL2, "failure") && s.Child(stanza.NSSASL, cond) != nil
}

// TestFASTTokens: a password login requests a token; later logins use it
// in one round trip; tokens are stored hashed, per user agent, refused for
// another user agent, for a replayed count, and after invalidation; a
// token works on a second server over the same database (restarts).
func TestFASTTokens(t *testing.T) {
	db := openTokenDB(t)
	srv, _ := fastServer(t, db, 0)
	c := dialS2(t, srv)
	fast := c.features.Child(nsSASL2, "authentication").Child(nsSASL2, "inline").Child(nsFAST, "fast")
	if fast == nil || !strings.Contains(fast.String(), "HT-SHA-256-NONE") || !strings.Contains(fast.String(), "HT-SHA-256-EXPR") {
		t.Fatalf("FAST not offered: %s", c.features)
	}
	c.send(t, auth{mech: "PLAIN", initial: plainIR(testUser, testPassword), uaID: testUA,
		extra: `<request-token xmlns='urn:xmpp:fast:0' mechanism='HT-SHA-256-NONE'/>`}.xml())
	s := c.mustNext(t)
	token := tokenOf(t, s)
	exp, _ := time.Parse(time.RFC3339, s.Child(nsFAST, "token").Get("expiry"))
	if d := time.Until(exp); d < 29*24*time.Hour || d > 30*24*time.Hour+time.Minute {
		t.Fatalf("default lifetime: expires in %v", d)
	}
	// Stored hashed, never in clear.
	rows, _ := db.FastTokens(context.Background(), "")
	sum := sha256.Sum256([]byte(token))
	if len(rows) != 1 || !bytes.Equal(rows[0].Hash, sum[:]) || rows[0].UserAgent != testUA || rows[0].Device != "Pixel 7" {
		t.Fatalf("stored: %+v", rows)
	}

	// A FAST login, with a count.
	c = dialS2(t, srv)
	if s := c.fastLogin(t, "HT-SHA-256-NONE", token, testUA, nil, `<fast xmlns='urn:xmpp:fast:0' count='1'/>`+bind2XML); !s.Is(nsSASL2, "success") || s.Child(nsBind2, "bound") == nil || s.Child(nsFAST, "token") != nil {
		t.Fatalf("FAST login: %s", s)
	}
	// The same count again is a replay.
	c = dialS2(t, srv)
	if s := c.fastLogin(t, "HT-SHA-256-NONE", token, testUA, nil, `<fast xmlns='urn:xmpp:fast:0' count='1'/>`); !isFailure(s, "not-authorized") {
		t.Fatalf("replayed count: %s", s)
	}
	// Another user agent cannot use it.
	if s := c.fastLogin(t, "HT-SHA-256-NONE", token, "another-device", nil, ""); !isFailure(s, "not-authorized") {
		t.Fatalf("other user agent: %s", s)
	}
	// Nor can a wrong token, another mechanism, or a user agent-less login.
	if s := c.fastLogin(t, "HT-SHA-256-NONE", token+"x", testUA, nil, ""); !isFailure(s, "not-authorized") {
		t.Fatalf("wrong token: %s", s)
	}
	c = dialS2(t, srv)
	c.send(t, auth{mech: "HT-SHA-256-NONE", initial: htResponse(testUser, token, nil)}.xml())
	if s := c.mustNext(t); !isFailure(s, "malformed-request") {
		t.Fatalf("no user agent: %s", s)
	}
	c.send(t, auth{mech: "HT-SHA-256-NONE", initial: []byte("garbage"), uaID: testUA}.xml())
	if s := c.mustNext(t); !isFailure(s, "malformed-request") {
		t.Fatalf("garbage initial response: %s", s)
	}
	c.send(t, auth{mech: "PLAIN", initial: plainIR(testUser, testPassword), extra: `<request-token xmlns='urn:xmpp:fast:0' mechanism='HT-SHA-256-NONE'/>`}.xml())
	if s := c.mustNext(t); !isFailure(s, "malformed-request") {
		t.Fatalf("token request without user agent: %s", s)
	}

	// A second server on the same database (as after a restart).
	srv2, _ := fastServer(t, db, 0)
	c = dialS2(t, srv2)
	if s := c.fastLogin(t, "HT-SHA-256-NONE", token, testUA, nil, `<fast xmlns='urn:xmpp:fast:0' count='2'/>`); !s.Is(nsSASL2, "success") {
		t.Fatalf("after restart: %s", s)
	}
	// Invalidation: one last login, then the token is gone.
	c = dialS2(t, srv2)
	if s := c.fastLogin(t, "HT-SHA-256-NONE", token, testUA, nil, `<fast xmlns='urn:xmpp:fast:0' count='3' invalidate='true'/>`); !s.Is(nsSASL2, "success") {
		t.Fatalf("invalidating login: %s", s)
	}
	c = dialS2(t, srv2)
	if s := c.fastLogin(t, "HT-SHA-256-NONE", token, testUA, nil, `<fast xmlns='urn:xmpp:fast:0' count='4'/>`); !isFailure(s, "not-authorized") {
		t.Fatalf("invalidated token: %s", s)
	}
}

// TestFASTRotationAndExpiry: past half its lifetime a token is replaced
// by a new one in <success/>; the old one works until the new one is
// used; an expired token is refused with credentials-expired.
func TestFASTRotationAndExpiry(t *testing.T) {
	db := openTokenDB(t)
	// Expiry is stored in whole seconds, so a token may end up to a second
	// early: the waits below allow for it.
	srv, _ := fastServer(t, db, 3*time.Second)
	c := dialS2(t, srv)
	c.send(t, auth{mech: "PLAIN", initial: plainIR(testUser, testPassword), uaID: testUA,
		extra: `<request-token xmlns='urn:xmpp:fast:0' mechanism='HT-SHA-256-NONE'/>`}.xml())
	old := tokenOf(t, c.mustNext(t))
	time.Sleep(1600 * time.Millisecond)
	c = dialS2(t, srv)
	fresh := tokenOf(t, c.fastLogin(t, "HT-SHA-256-NONE", old, testUA, nil, ""))
	if fresh == old {
		t.Fatal("rotation returned the same token")
	}
	c = dialS2(t, srv)
	if s := c.fastLogin(t, "HT-SHA-256-NONE", old, testUA, nil, ""); !s.Is(nsSASL2, "success") {
		t.Fatalf("the old token before the new one was used: %s", s)
	}
	c = dialS2(t, srv)
	if s := c.fastLogin(t, "HT-SHA-256-NONE", fresh, testUA, nil, ""); !s.Is(nsSASL2, "success") {
		t.Fatalf("new token: %s", s)
	}
	c = dialS2(t, srv)
	if s := c.fastLogin(t, "HT-SHA-256-NONE", old, testUA, nil, ""); !isFailure(s, "not-authorized") {
		t.Fatalf("the old token after the new one was used: %s", s)
	}
	c = dialS2(t, srv)
	c.send(t, auth{mech: "PLAIN", initial: plainIR(testUser, testPassword), uaID: "gone-device",
		extra: `<request-token xmlns='urn:xmpp:fast:0' mechanism='HT-SHA-256-NONE'/>`}.xml())
	tokenOf(t, c.mustNext(t))
	time.Sleep(3100 * time.Millisecond)
	c = dialS2(t, srv)
	if s := c.fastLogin(t, "HT-SHA-256-NONE", fresh, testUA, nil, ""); !isFailure(s, "credentials-expired") {
		t.Fatalf("expired token: %s", s)
	}
	// The device that never came back: its expired token goes when the
	// next token is issued.
	c = dialS2(t, srv)
	c.send(t, auth{mech: "PLAIN", initial: plainIR(testUser, testPassword), uaID: testUA,
		extra: `<request-token xmlns='urn:xmpp:fast:0' mechanism='HT-SHA-256-NONE'/>`}.xml())
	tokenOf(t, c.mustNext(t))
	if all, _ := db.FastTokens(context.Background(), ""); len(all) != 1 || all[0].UserAgent != testUA {
		t.Fatalf("after pruning: %+v", all)
	}
}

// TestFASTChannelBound: HT-SHA-256-EXPR (TLS 1.3 exporter) and -ENDP
// (certificate hash) work with the right binding data and fail with a
// wrong one; on TLS 1.2 EXPR is not offered.
func TestFASTChannelBound(t *testing.T) {
	db := openTokenDB(t)
	srv, _ := fastServer(t, db, 0)
	cert := testCert(t)
	endp := sha256.Sum256(cert.Certificate[0]) // ECDSA with SHA-256
	for _, mc := range []struct {
		mech string
		cb   func(*s2conn) []byte
	}{
		{"HT-SHA-256-EXPR", func(c *s2conn) []byte {
			cs := c.tlsState()
			b, err := cs.ExportKeyingMaterial("EXPORTER-Channel-Binding", nil, 32)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}},
		{"HT-SHA-256-ENDP", func(*s2conn) []byte { return endp[:] }},
	} {
		ua := "ua-" + mc.mech
		c := dialS2(t, srv)
		c.send(t, auth{mech: "PLAIN", initial: plainIR(testUser, testPassword), uaID: ua,
			extra: fmt.Sprintf(`<request-token xmlns='urn:xmpp:fast:0' mechanism='%s'/>`, mc.mech)}.xml())
		token := tokenOf(t, c.mustNext(t))
		c = dialS2(t, srv)
		if s := c.fastLogin(t, mc.mech, token, ua, mc.cb(c), ""); !s.Is(nsSASL2, "success") {
			t.Fatalf("%s: %s", mc.mech, s)
		}
		c = dialS2(t, srv)
		if s := c.fastLogin(t, mc.mech, token, ua, bytes.Repeat([]byte{7}, 32), ""); !isFailure(s, "not-authorized") {
			t.Fatalf("%s with wrong binding data: %s", mc.mech, s)
		}
		// The binding of another connection is wrong data too.
		other := dialS2(t, srv)
		c = dialS2(t, srv)
		if s := c.fastLogin(t, mc.mech, token, ua, mc.cb(other), ""); mc.mech == "HT-SHA-256-EXPR" && !isFailure(s, "not-authorized") {
			t.Fatalf("%s with another connection's binding: %s", mc.mech, s)
		}
	}
	c := dialS2TLS(t, srv, tls.VersionTLS12)
	fast := c.features.Child(nsSASL2, "authentication").Child(nsSASL2, "inline").Child(nsFAST, "fast").String()
	if strings.Contains(fast, "EXPR") || !strings.Contains(fast, "ENDP") {
		t.Fatalf("TLS 1.2 FAST mechanisms: %s", fast)
	}
}
