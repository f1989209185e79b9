package bouncer

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"xmppbouncer/config"
	"xmppbouncer/stanza"
)

// TestSMResumeCost compares, for a client in 20 rooms of 50 occupants, a
// full reconnect (bind, presence, 20 joins) with a resume: bytes after TLS
// and after SASL, round trips after SASL, and time on loopback. Run with
// XB_SM_FIGURES=1 to print the figures; the resume must stay under 2 KB
// after SASL when nothing was missed.
func TestSMResumeCost(t *testing.T) {
	const rooms, occupants = 20, 50
	e := newBusyEnv(t, "r", rooms, occupants)

	start := time.Now()
	c := e.dialSM(t)
	c.bind("phone")
	id := c.enable()
	c.received()
	var joins strings.Builder
	joins.WriteString(`<presence/>`)
	for i := 0; i < rooms; i++ {
		fmt.Fprintf(&joins, `<presence to='r%02d@conference.localhost/alice'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>`, i)
	}
	c.write(joins.String())
	for i := 0; i < rooms; i++ {
		c.expect("a subject", func(el *stanza.Element) bool { return el.Kind() == "message" && isSubject(el) })
	}
	fullTime := time.Since(start)
	fullTrips := c.bytes.roundTrips(c.authOps, c.bytes.opMark())
	fullR, fullW := c.traffic()
	n := len(c.received())
	if n < rooms*(occupants+1) {
		t.Fatalf("full login got %d stanzas", n)
	}
	e.waitFor("all acked", func() bool {
		// Stragglers (presence reflections) may follow the subjects.
		n += len(c.received())
		c.write(fmt.Sprintf(`<a xmlns='urn:xmpp:sm:3' h='%d'/>`, n))
		time.Sleep(50 * time.Millisecond)
		s, d, _, _ := e.counters("phone")
		return s == d
	})
	c.drop()
	e.waitFor("hibernation", func() bool { _, _, h, _ := e.counters("phone"); return h })

	start = time.Now()
	c2 := e.dialSMResume(t, id, n)
	c2.expect("resumed", isSM("resumed"))
	resumeTime := time.Since(start)
	resumeTrips := c2.bytes.roundTrips(c2.authOps, c2.bytes.opMark())
	time.Sleep(100 * time.Millisecond)
	resR, resW := c2.traffic()
	if got := c2.received(); len(got) != 0 {
		t.Fatalf("resume resent %d stanzas, want none", len(got))
	}
	afterSASL := resR - c2.authRead + resW - c2.authWrote
	if afterSASL > 2048 {
		t.Fatalf("resume took %d bytes after SASL", afterSASL)
	}
	// Round trips after SASL, counted from the wire: the resume is
	// pipelined (stream restart and <resume/> in one write), so one.
	if resumeTrips != 1 {
		t.Errorf("resume took %d round trips after SASL, want 1 (pipelined)", resumeTrips)
	}
	if fullTrips <= resumeTrips {
		t.Errorf("full login took %d round trips after SASL, resume %d", fullTrips, resumeTrips)
	}
	if os.Getenv("XB_SM_FIGURES") != "" || testing.Verbose() {
		t.Logf("full login, %d rooms x %d occupants: %d B read + %d B written after TLS (%d + %d after SASL), %d round trips after SASL, %v",
			rooms, occupants, fullR, fullW, fullR-c.authRead, fullW-c.authWrote, fullTrips, fullTime)
		t.Logf("resume: %d B read + %d B written after TLS (%d + %d after SASL), %d round trip(s) after SASL, %v",
			resR, resW, resR-c2.authRead, resW-c2.authWrote, resumeTrips, resumeTime)
	}
}

// newBusyEnv starts a bouncer kept in rooms rooms (prefix00, prefix01, …)
// and gives each room occupants-1 others, as the room would have sent
// them, for the cost of a client that joins them all.
func newBusyEnv(t *testing.T, prefix string, rooms, occupants int) *env {
	t.Helper()
	e := newEnv(t, nil, func(c *configT) {
		for i := 0; i < rooms; i++ {
			c.Rooms = append(c.Rooms, config.Room{JID: fmt.Sprintf("%s%02d@%s", prefix, i, "conference.localhost"), Nick: "alice", Autojoin: true})
		}
	})
	e.waitFor("rooms joined", func() bool {
		n := 0
		e.b.Do(func() {
			for _, r := range e.b.muc.rooms {
				if r.State == roomJoined {
					n++
				}
			}
		})
		return n == rooms
	})
	e.b.Do(func() {
		for _, r := range e.b.muc.rooms {
			for i := 1; i < occupants; i++ {
				nick := fmt.Sprintf("occupant-%02d", i)
				p := stanza.MustParse(fmt.Sprintf(`<presence from='%s/%s' to='%s'><x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='member' role='participant'/></x><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://conversations.im' ver='VvsdfQweQfd9w2xHY6FGeStgOM0='/><occupant-id xmlns='urn:xmpp:occupant-id:0' id='%032d'/></presence>`, r.JID, nick, e.b.upl.fullJID(), i))
				r.setOccupant(nick, p)
			}
		}
	})
	return e
}
