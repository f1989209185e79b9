package listener

import (
	"errors"
	"strings"
	"testing"
	"time"

	"mellium.im/sasl"

	"xmppbouncer/wire"
)

// One address cannot use up the server: beyond its own caps on
// connections and on connections not yet logged in it is refused, while a
// login from another address goes through.
func TestPerAddressCaps(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxConnections = 16
	cfg.MaxConnectionsPerAddress = 3
	cfg.MaxUnauthenticatedPerAddress = 2
	rec := newRecorder()
	srv := startServer(t, cfg, rec)
	addr := srv.Addr().String()

	// Two idle connections use up 127.0.0.1's unauthenticated slots.
	for i := 0; i < 2; i++ {
		r := dialRawFrom(t, "127.0.0.1", addr)
		r.send(t, header(testDomain))
		r.mustNext(t) // features: the connection is counted
	}
	r := dialRawFrom(t, "127.0.0.1", addr)
	if cond := r.streamErrorCond(t); cond != "policy-violation" {
		t.Fatalf("third unauthenticated connection from one address: %q", cond)
	}
	if _, err := dialLogin(t, srv, login{from: "127.0.0.1", resource: "same"}); err == nil || !strings.Contains(err.Error(), "policy-violation") {
		t.Fatalf("login from the saturated address: %v", err)
	}
	// Another address logs in at once.
	start := time.Now()
	mustLogin(t, srv, login{from: "127.0.0.2", resource: "other", mech: sasl.ScramSha1})
	rec.waitBound(t)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("login from another address took %v", d)
	}
	// Logged-in connections count against the address too, but not as
	// unauthenticated: 127.0.0.2 has 1 of 3, and may log in twice more.
	mustLogin(t, srv, login{from: "127.0.0.2", resource: "other2"})
	rec.waitBound(t)
	mustLogin(t, srv, login{from: "127.0.0.2", resource: "other3"})
	rec.waitBound(t)
	if _, err := dialLogin(t, srv, login{from: "127.0.0.2", resource: "other4"}); err == nil || !strings.Contains(err.Error(), "policy-violation") {
		t.Fatalf("fourth connection from one address: %v", err)
	}
}

// A connection that does not log in is cut off at the pre-auth timeout,
// well before the negotiation timeout.
func TestPreAuthTimeout(t *testing.T) {
	cfg := testConfig(t)
	cfg.PreAuthTimeout = 300 * time.Millisecond
	srv := startServer(t, cfg, newRecorder())
	r := dialRaw(t, srv.Addr().String())
	start := time.Now()
	r.send(t, header(testDomain))
	if cond := r.streamErrorCond(t); cond != "connection-timeout" {
		t.Fatalf("stream error %q", cond)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("cut off after %v, want about 300ms", d)
	}
	// A client that logs in in time is not affected once authenticated.
	c := mustLogin(t, srv, login{resource: "slowbind"})
	time.Sleep(500 * time.Millisecond)
	c.writeRaw(t, " ")
	select {
	case err := <-c.end:
		t.Fatalf("logged-in client was cut off: %v", err)
	default:
	}
}

// The per-address failure delay is not reset by a successful login from
// the same address: an attacker who also knows a valid login, or who shares
// the address with the owner, keeps paying for the guesses.
func TestFailureDelaySurvivesLogin(t *testing.T) {
	cfg := testConfig(t)
	cfg.AuthFailDelay = 150 * time.Millisecond
	srv := startServer(t, cfg, newRecorder())
	r, _ := secureRaw(t, srv)
	for i := 0; i < 2; i++ {
		r.send(t, plainAuth("", testUser, "nope"))
		r.mustNext(t)
	}
	mustLogin(t, srv, login{resource: "owner"})
	start := time.Now()
	r.send(t, plainAuth("", testUser, "nope"))
	r.mustNext(t)
	if d := time.Since(start); d < 600*time.Millisecond {
		t.Fatalf("third failure answered after %v; want >=600ms (the count must survive the login)", d)
	}
}

// A client that drops its connection without closing the stream ends with
// "the peer closed the connection", not an XML syntax error.
func TestDroppedConnectionIsNotAnXMLError(t *testing.T) {
	rec := newRecorder()
	srv := startServer(t, testConfig(t), rec)
	c := mustLogin(t, srv, login{resource: "dropper"})
	rec.waitBound(t)
	c.sess.Conn().Close()
	e := rec.waitClosed(t)
	if !errors.Is(e.err, wire.ErrConnectionClosed) || strings.Contains(e.err.Error(), "syntax") {
		t.Fatalf("Closed with %v, want wire.ErrConnectionClosed", e.err)
	}
}
