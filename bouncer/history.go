package bouncer

import (
	"context"
	"strconv"
	"time"

	"xmppbouncer/sessions"
	"xmppbouncer/stanza"
	"xmppbouncer/store"
)

// archiveMessage extracts what the archive indexes from a stanza.
func (r *Room) archiveMessage(el *stanza.Element) *store.Message {
	_, nick := splitJID(el.From())
	// A live arrival keeps its fraction of a second (XEP-0082 allows one;
	// the archive stores microseconds): cut to the second, a replay or MAM
	// result could show a message up to a second before it was sent, and
	// out of order with what the room says. Rooms that stamp in whole
	// seconds (Prosody) keep theirs.
	now := time.Now().UTC()
	m := &store.Message{Room: r.JID, ID: el.ID(), Nick: nick, Stamp: now}
	for _, c := range el.ChildrenNamed(stanza.NSStanzaID, "stanza-id") {
		// XEP-0359 §3.1: only a stanza-id whose by is the room is the room's.
		if c.Get("by") == r.JID {
			m.StanzaID = c.Get("id")
		}
	}
	if o := el.Child(stanza.NSStanzaID, "origin-id"); o != nil {
		m.OriginID = o.Get("id")
	}
	// Only the room's own delay dates a message (trust.go); a live one is
	// archived when it arrived.
	if t, ok := delayStamp(el, r.JID, now); ok {
		m.Stamp = t
	}
	// The room dates its history in whole seconds (Prosody), while a live
	// arrival keeps its fraction: a message the gap fill brings, which came
	// after our newest, could read as earlier than a live one of the same
	// second and be replayed before it. Within that second it is placed
	// after what the archive has; an older second keeps its own stamp.
	if m.Stamp.Before(r.stampFloor) && m.Stamp.Truncate(time.Second).Equal(r.stampFloor.Truncate(time.Second)) {
		m.Stamp = r.stampFloor
	}
	if m.Stamp.After(r.stampFloor) {
		r.stampFloor = m.Stamp
	}
	if body := el.Child(stanza.NSClient, "body"); body != nil {
		s := body.Text()
		m.Body = &s
	}
	if p := r.Occupants[nick]; p != nil {
		if it := mucUser(p).Child(stanza.NSMUCUser, "item"); it != nil {
			m.RealJID, _ = splitJID(it.Get("jid"))
		}
	}
	m.XML = el.With("to", "").String()
	return m
}

// historyOf reads the <history/> of a join presence (XEP-0045 §7.2.14).
func historyOf(p *stanza.Element) store.HistoryLimit {
	lim := store.NoHistoryLimit
	h := p.Child(stanza.NSMUC, "x").Child(stanza.NSMUC, "history")
	if h == nil {
		return lim
	}
	num := func(name string) int {
		v := h.Get(name)
		if v == "" {
			return -1
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return -1
		}
		return n
	}
	lim.MaxStanzas, lim.MaxChars, lim.Seconds = num("maxstanzas"), num("maxchars"), num("seconds")
	if t, err := time.Parse(time.RFC3339Nano, h.Get("since")); err == nil {
		lim.Since = t
	}
	return lim
}

// sendHistory replays archived messages to one joining client, each with
// <delay from=room/> (XEP-0045 §7.2.13), read off the loop while the
// client's later output waits behind them.
//
// A join without <history/> limits from a resource seen before in this
// room gets everything after its cursor: exactly what it missed, capped by
// replay_max and replay_max_age. Explicit limits are honoured as given, up
// to replay_max messages; a resource never seen before gets
// default_replay. Replays are fed to the connection as it drains.
func (r *Room) sendHistory(s *sessions.Session, lim store.HistoryLimit) {
	if r.b.opt.Archive == nil {
		return
	}
	cur, seen := r.m.sentCursor(r.JID, s)
	plain := lim.MaxStanzas < 0 && lim.MaxChars < 0 && lim.Seconds < 0 && lim.Since.IsZero()
	hc := r.b.opt.Config.History
	// No replay is longer than replay_max, whatever a client asks for.
	if lim.MaxStanzas > hc.ReplayMax {
		lim.MaxStanzas = hc.ReplayMax
	}
	r.b.clients.of(s).noticeHistoryUnavailable(r.JID)
	h := r.b.clients.of(s).reserve()
	id, to, room := s.ID, s.JID.String(), r.JID
	r.b.offLoop(func(ctx context.Context, db Store) func() {
		var msgs []*store.Message
		var err error
		if plain && seen {
			var notBefore time.Time
			if hc.ReplayMaxAgePeriod > 0 {
				notBefore = time.Now().Add(-hc.ReplayMaxAgePeriod)
			}
			msgs, err = db.After(ctx, room, cur, hc.ReplayMax, notBefore)
		} else {
			msgs, err = db.History(ctx, room, lim, hc.DefaultReplay)
		}
		if err != nil {
			r.b.log.Error("history replay failed", "room", room, "err", err)
		}
		items := make([]outItem, 0, len(msgs))
		for _, m := range msgs {
			el, err := stanza.Parse(m.XML)
			if err != nil {
				r.b.log.Error("archived stanza unreadable", "room", room, "seq", m.Seq, "err", err)
				continue
			}
			items = append(items, outItem{el: withDelay(el, room, m.Stamp).With("to", to), room: room, seq: m.Seq})
		}
		return func() {
			if plain && seen {
				items = r.m.notYetSent(room, id, items)
			}
			r.b.clients.fill(id, h, items)
		}
	})
}

// notYetSent drops from a catch-up replay what reached the client after
// the replay was asked for (a message forwarded before its commit, whose
// cursor moved only once the commit landed). Nothing behind the replay has
// been written yet, so the cursor now still marks what the client has.
func (m *mucService) notYetSent(room string, id uint64, items []outItem) []outItem {
	s := m.b.reg.ByID(id)
	if s == nil {
		return items
	}
	cur, _ := m.sentCursor(room, s)
	for len(items) > 0 && items[0].seq <= cur {
		items = items[1:]
	}
	return items
}

// sentCursor is where s stands in room counting what was already handed to
// its connection, delivered or not: a client that leaves and rejoins at
// once must not get again what is still on its way to it.
func (m *mucService) sentCursor(room string, s *sessions.Session) (int64, bool) {
	m.b.dlv.resolveUncommitted()
	cur, seen := m.b.dlv.cursor(room, s.JID.Resourcepart())
	cur, seen = m.b.clients.of(s).sentCursor(room, cur, seen)
	return cur, seen
}

// withDelay adds <delay from=room stamp/> unless the stanza has one.
func withDelay(el *stanza.Element, room string, stamp time.Time) *stanza.Element {
	if el.Child(stanza.NSDelay, "delay") != nil {
		return el
	}
	return el.Append(stanza.New(stanza.NSDelay, "delay", "from", room, "stamp", stamp.UTC().Format(stampFormat)))
}

// joinHistory is the <history/> of the account's upstream join: only what
// the archive lacks. A room with MAM sends none; catchUp pages through its
// archive after the newest message we had when joining.
func (r *Room) joinHistory(last *store.Message) *stanza.Element {
	if r.b.arch == nil {
		return stanza.New(stanza.NSMUC, "history", "maxstanzas", "0")
	}
	switch {
	case r.hasMAM:
		return stanza.New(stanza.NSMUC, "history", "maxstanzas", "0")
	case last == nil:
		return stanza.New(stanza.NSMUC, "history", "seconds", strconv.Itoa(int(r.b.opt.Config.History.CatchupStart.Seconds())), "maxstanzas", "1000")
	default:
		return stanza.New(stanza.NSMUC, "history", "since", last.Stamp.UTC().Format(time.RFC3339), "maxstanzas", "1000")
	}
}

// decorateRoomDisco makes an archived room advertise MAM to local clients,
// which the bouncer answers from its own archive.
func (m *mucService) decorateRoomDisco(room string, out *stanza.Element) *stanza.Element {
	if m.b.opt.Archive == nil {
		return out
	}
	return withDiscoFeature(out, stanza.NSMAM)
}

// withDiscoFeature adds feature to a disco#info result (for the entity
// itself, not a node) that lacks it.
func withDiscoFeature(out *stanza.Element, feature string) *stanza.Element {
	q := out.Child(stanza.NSDiscoInfo, "query")
	if q == nil || q.Get("node") != "" || out.Type() != "result" {
		return out
	}
	for _, f := range q.ChildrenNamed(stanza.NSDiscoInfo, "feature") {
		if f.Get("var") == feature {
			return out
		}
	}
	nq := q.ShallowCopy()
	nq.Children = append(append([]stanza.Node(nil), q.Children...), stanza.Node{El: stanza.New(stanza.NSDiscoInfo, "feature", "var", feature)})
	return out.Replace(q, nq)
}
