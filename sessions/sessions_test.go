package sessions

import (
	"testing"

	"mellium.im/xmpp/jid"

	"xmppbouncer/stanza"
)

type nopConn struct{}

func (nopConn) Send(*stanza.Element) bool { return true }
func (nopConn) Close(*stanza.StreamError) {}
func (nopConn) Sent() uint64              { return 0 }
func (nopConn) Delivered() uint64         { return 0 }

func session(id uint64, res string) *Session {
	return &Session{ID: id, JID: jid.MustParse("alice@example.org/" + res), Conn: nopConn{}}
}

func TestReplaceByResourceDropsClaims(t *testing.T) {
	r := New()
	old := session(1, "phone")
	r.Add(old)
	r.Claim("room@muc.example.org", old, "alice")
	nw := session(2, "phone")
	if got := r.Add(nw); got != old {
		t.Fatalf("Add returned %v, want the replaced session", got)
	}
	if r.ByResource("phone") != nw || r.ByID(1) != nil || r.Len() != 1 {
		t.Fatal("old session still registered")
	}
	if len(r.Claimants("room@muc.example.org")) != 0 {
		t.Fatal("claims of the replaced session survived")
	}
	if r.Remove(old) {
		t.Fatal("removing a replaced session removed something")
	}
}

func TestClaimsPerRoom(t *testing.T) {
	r := New()
	a, b := session(1, "a"), session(2, "b")
	r.Add(a)
	r.Add(b)
	r.Claim("r1@m", a, "x")
	r.Claim("r1@m", b, "y")
	r.Claim("r2@m", b, "y")
	if got := r.Claimants("r1@m"); len(got) != 2 || got[0] != a {
		t.Fatalf("claimants %v", got)
	}
	if c := r.ClaimOf("r1@m", b); c == nil || c.Nick != "y" {
		t.Fatalf("claim of b: %v", c)
	}
	if !r.Unclaim("r1@m", a) || r.Unclaim("r1@m", a) {
		t.Fatal("Unclaim should succeed once")
	}
	if got := r.RoomsOf(b); len(got) != 2 {
		t.Fatalf("rooms of b: %v", got)
	}
	if got := r.ClearRoom("r2@m"); len(got) != 1 || got[0] != b || r.ClaimOf("r2@m", b) != nil {
		t.Fatalf("ClearRoom: %v", got)
	}
	b.Presence = stanza.New(stanza.NSClient, "presence")
	if av := r.Available(); len(av) != 1 || av[0] != b {
		t.Fatalf("available: %v", av)
	}
}
