package bouncer

import (
	"testing"

	"mellium.im/xmpp/jid"

	"xmppbouncer/sessions"
	"xmppbouncer/stanza"
)

// recorder is a session connection that keeps what it is sent.
type recorder struct {
	got    []*stanza.Element
	closed *stanza.StreamError
}

func (r *recorder) Send(el *stanza.Element) bool { r.got = append(r.got, el); return true }
func (r *recorder) Close(se *stanza.StreamError) { r.closed = se }
func (r *recorder) Sent() uint64                 { return uint64(len(r.got)) }
func (r *recorder) Delivered() uint64            { return uint64(len(r.got)) }

type upRecorder struct{ got []*stanza.Element }

func (u *upRecorder) Send(el *stanza.Element) bool { u.got = append(u.got, el); return true }

func unitBouncer(t *testing.T) (*Bouncer, *upRecorder) {
	b := New(Options{Account: jid.MustParse("alice@example.org"), Logger: testLogger()})
	up := &upRecorder{}
	b.SetUpstream(up)
	b.upl.connected = true
	b.upl.full = "alice@example.org/bouncer"
	return b, up
}

func addSession(b *Bouncer, id uint64, res string) (*sessions.Session, *recorder) {
	rec := &recorder{}
	s := &sessions.Session{ID: id, JID: jid.MustParse("alice@example.org/" + res), Conn: rec}
	b.reg.Add(s)
	return s, rec
}

// The bouncer does push itself (push.go), so a server that advertises it
// keeps it, exactly once.
func TestDiscoPushKept(t *testing.T) {
	b, up := unitBouncer(t)
	s, rec := addSession(b, 1, "a")
	b.route.handleClient(s, stanza.MustParse(`<iq type="get" id="d1" to="example.org"><query xmlns="http://jabber.org/protocol/disco#info"/></iq>`))
	if len(up.got) != 1 {
		t.Fatalf("disco not forwarded: %v", up.got)
	}
	req := up.got[0]
	b.route.handleUpstream(stanza.MustParse(`<iq type="result" id="` + req.ID() + `" from="example.org" to="alice@example.org/bouncer"><query xmlns="http://jabber.org/protocol/disco#info"><identity category="server" type="im"/><feature var="urn:xmpp:push:0"/><feature var="urn:xmpp:carbons:2"/></query></iq>`))
	if len(rec.got) != 1 {
		t.Fatalf("answer not delivered: %v", rec.got)
	}
	out := rec.got[0]
	if out.ID() != "d1" || out.To() != "alice@example.org/a" {
		t.Fatalf("id/to not restored: %s", out)
	}
	if got := out.Child(stanza.NSDiscoInfo, "query").ChildrenNamed(stanza.NSDiscoInfo, "feature"); len(got) != 2 || got[0].Get("var") != stanza.NSPush {
		t.Fatalf("features changed: %s", out)
	}
}

func TestCSINeverForwarded(t *testing.T) {
	b, up := unitBouncer(t)
	s, rec := addSession(b, 1, "a")
	b.route.handleClient(s, stanza.MustParse(`<inactive xmlns="urn:xmpp:csi:0"/>`))
	if !s.Inactive || len(up.got) != 0 || rec.closed != nil {
		t.Fatalf("CSI: inactive=%v up=%v closed=%v", s.Inactive, up.got, rec.closed)
	}
	b.route.handleClient(s, stanza.MustParse(`<active xmlns="urn:xmpp:csi:0"/>`))
	if s.Inactive {
		t.Fatal("active not recorded")
	}
	b.route.handleClient(s, stanza.MustParse(`<bogus xmlns="urn:example"/>`))
	if rec.closed == nil || rec.closed.Condition != "unsupported-stanza-type" {
		t.Fatalf("unknown top-level element: %v", rec.closed)
	}
}

func TestPendingIQsFailWhenUpstreamDrops(t *testing.T) {
	b, _ := unitBouncer(t)
	s, rec := addSession(b, 1, "a")
	b.route.handleClient(s, stanza.MustParse(`<iq type="get" id="v1" to="bob@example.org/x"><query xmlns="jabber:iq:version"/></iq>`))
	b.upl.upstreamOffline(nil)
	if len(rec.got) != 1 || rec.got[0].ID() != "v1" || rec.got[0].Type() != "error" || rec.got[0].From() != "bob@example.org/x" {
		t.Fatalf("pending IQ not failed: %v", rec.got)
	}
}

func TestAggregatePresence(t *testing.T) {
	b, up := unitBouncer(t)
	s1, _ := addSession(b, 1, "a")
	s2, _ := addSession(b, 2, "b")
	b.route.handleClient(s1, stanza.MustParse(`<presence><show>away</show><priority>1</priority></presence>`))
	b.route.handleClient(s2, stanza.MustParse(`<presence><show>chat</show><status>hi</status><priority>1</priority></presence>`))
	last := up.got[len(up.got)-1]
	if last.ChildText(stanza.NSClient, "show") != "chat" || last.ChildText(stanza.NSClient, "status") != "hi" || last.Child(stanza.NSCaps, "c") == nil {
		t.Fatalf("aggregate: %s", last)
	}
	n := len(up.got)
	b.route.handleClient(s1, stanza.MustParse(`<presence><show>away</show><priority>1</priority></presence>`))
	if len(up.got) != n {
		t.Fatalf("unchanged aggregate sent again: %s", up.got[len(up.got)-1])
	}
	b.route.handleClient(s2, stanza.MustParse(`<presence type="unavailable"/>`))
	b.route.handleClient(s1, stanza.MustParse(`<presence type="unavailable"/>`))
	last = up.got[len(up.got)-1]
	if last.ChildText(stanza.NSClient, "show") != "away" {
		t.Fatalf("detached presence: %s", last)
	}
}
