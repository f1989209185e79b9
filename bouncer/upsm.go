package bouncer

import (
	"context"
	"fmt"
	"time"

	"mellium.im/xmpp/jid"

	"xmppbouncer/stanza"
	"xmppbouncer/store"
	"xmppbouncer/upstream"
)

// XEP-0198 on the upstream session, the bouncer's side (the protocol is
// in upstream/sm.go). The server's stanzas are acknowledged only once the
// bouncer durably handled them: each upstream stanza is followed, in the
// archiver's queue, by a mark; the archiver commits everything before it
// (room messages, offline and durable chats), saves the mark's h with the
// session id, and only then lets the upstream session send that h. After a
// crash the server still holds whatever was not committed, and the resume
// gets it again; room messages and chats are recognised by stanza-id.

// upstreamSMStore is what the upstream state needs from the Store (the
// sqlite package implements it).
type upstreamSMStore interface {
	UpstreamSM(ctx context.Context) (store.UpstreamSM, bool, error)
	SetUpstreamSM(ctx context.Context, s store.UpstreamSM) error
	SetUpstreamH(ctx context.Context, id string, h uint32) error
}

// chatStore is the durable chat queue (chatq.go).
type chatStore interface {
	StoreChats(ctx context.Context, cs []*store.Chat) error
	ChatsFor(ctx context.Context, resource string, after, upTo int64, max int) ([]store.Chat, error)
	LastChat(ctx context.Context) (int64, error)
	DeleteChats(ctx context.Context, upTo int64, before, olderThan time.Time) (int64, error)
}

func saveUpstreamH(ctx context.Context, db Store, tok upstream.Token) error {
	s, ok := db.(upstreamSMStore)
	if !ok {
		return nil
	}
	return s.SetUpstreamH(ctx, tok.ID, tok.N)
}

func storeChats(ctx context.Context, db Store, cs []*store.Chat) error {
	s, ok := db.(chatStore)
	if !ok {
		for _, c := range cs {
			c.Inserted = true
		}
		return nil
	}
	return s.StoreChats(ctx, cs)
}

type upLost struct {
	items      []upstream.Sent
	notHandled bool
}
type upResumed struct{ bound jid.JID }

// ResumeState implements upstream.DurableHandler: the persisted session,
// read once at start.
func (h UpstreamHandler) ResumeState() (upstream.SMState, bool) {
	s, ok := h.b.opt.Archive.(upstreamSMStore)
	if h.b.arch == nil || !ok {
		return upstream.SMState{}, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.b.opt.DBTimeout)
	defer cancel()
	st, found, err := s.UpstreamSM(ctx)
	if err != nil {
		h.b.log.Error("reading the upstream session state; starting a new session", "err", err)
		return upstream.SMState{}, false
	}
	return upstream.SMState{ID: st.ID, Bound: st.Bound, H: st.H}, found
}

// SMEnabled implements upstream.DurableHandler: the new session is
// persisted before any of its marks (they are queued after it), and before
// Online.
func (h UpstreamHandler) SMEnabled(st upstream.SMState) {
	if h.b.arch == nil {
		return
	}
	// The session is announced only once a restart could resume it.
	saved := make(chan struct{})
	h.b.arch.write(func(ctx context.Context, db Store) error {
		if s, ok := db.(upstreamSMStore); ok {
			if err := s.SetUpstreamSM(ctx, store.UpstreamSM{ID: st.ID, Bound: st.Bound, H: st.H}); err != nil {
				return err
			}
		}
		close(saved)
		return nil
	})
	select {
	case <-saved:
	case <-time.After(h.b.opt.DBTimeout):
		h.b.log.Warn("upstream session state not saved yet; a restart before it is cannot resume")
	}
}

// StanzaSM implements upstream.DurableHandler. el is nil for a stanza the
// upstream session consumed itself, acknowledged in its turn.
func (h UpstreamHandler) StanzaSM(el *stanza.Element, tok upstream.Token) {
	if el != nil {
		h.b.stats.count(FromUpstream, el)
		if h.b.arch != nil {
			h.b.arch.admit()
		}
	}
	h.b.events <- upStanza{el: el, tok: tok}
}

// Lost implements upstream.DurableHandler.
func (h UpstreamHandler) Lost(items []upstream.Sent, notHandled bool) {
	h.b.events <- upLost{items: items, notHandled: notHandled}
}

type upResumeFailed struct{}
type upResumedCold struct{}

// ResumedCold implements upstream.DurableHandler.
func (h UpstreamHandler) ResumedCold() { h.b.events <- upResumedCold{} }

// probeContacts asks for the presence of every contact the account is
// subscribed to (RFC 6121 §4.3): a resumed session never sent initial
// presence in this process, so the server sends none by itself.
func (l *upstreamLink) probeContacts() {
	q := stanza.New(stanza.NSClient, "iq", "type", "get").Append(stanza.New(stanza.NSRoster, "query"))
	l.b.iq.sendInternal(q, func(resp *stanza.Element) {
		if resp.Type() != "result" {
			l.b.log.Warn("roster unavailable: contacts' presence is not known until they change it", "condition", stanza.ErrorCondition(resp))
			return
		}
		n := 0
		for _, it := range resp.Child(stanza.NSRoster, "query").ChildrenNamed(stanza.NSRoster, "item") {
			if sub := it.Get("subscription"); (sub == "to" || sub == "both") && it.Get("jid") != "" {
				l.b.sendUp(stanza.New(stanza.NSClient, "presence", "type", "probe", "to", it.Get("jid")))
				n++
			}
		}
		l.b.log.Info("resumed upstream session: probed contacts for their presence", "contacts", n)
	})
}

// ResumeFailed implements upstream.DurableHandler.
func (h UpstreamHandler) ResumeFailed() { h.b.events <- upResumeFailed{} }

// Resumed implements upstream.DurableHandler.
func (h UpstreamHandler) Resumed(bound jid.JID) { h.b.events <- upResumed{bound} }

// upstreamHandled queues the mark after the writes a stanza caused.
func (l *upstreamLink) upstreamHandled(tok upstream.Token) {
	if tok.ID == "" {
		return
	}
	if l.b.arch == nil {
		l.upstreamAck(tok)
		return
	}
	l.b.arch.enqueue(archJob{mark: &tok})
}

// upstreamAck lets the upstream session acknowledge up to tok.
func (l *upstreamLink) upstreamAck(tok upstream.Token) {
	if a, ok := l.b.up.(interface{ Handled(upstream.Token) }); ok {
		a.Handled(tok)
	}
}

// sendUpFrom is sendUp for a message a local session sent: if the
// upstream session ends before the server acknowledged it, it comes back
// (upstreamLost) with the session's id.
func (l *upstreamLink) sendUpFrom(session uint64, el *stanza.Element) bool {
	t, ok := l.b.up.(interface {
		SendTagged(*stanza.Element, uint64) bool
	})
	if !ok || !l.connected {
		return l.b.sendUp(el)
	}
	l.b.stats.count(ToUpstream, el)
	return t.SendTagged(el, session)
}

// upstreamLost handles messages sent on an upstream session that ended
// before the server acknowledged them: never silence. When the server
// said it did not handle them (<failed h/>) they are sent again, first in
// line, as if they had waited in the outbox; otherwise nobody knows
// whether they arrived, and their senders are told so.
func (l *upstreamLink) upstreamLost(ev upLost) {
	var chats []queued
	rooms := map[*Room][]queued{}
	errs := 0
	for _, it := range ev.items {
		el := it.El
		if el.Kind() != "message" || it.Tag == 0 {
			continue // IQs failed with the session; presence is sent afresh
		}
		if ev.notHandled {
			bare, _ := splitJID(el.To())
			if r := l.b.muc.room(bare); r != nil && el.Type() == "groupchat" {
				rooms[r] = append(rooms[r], queued{session: it.Tag, el: el})
			} else {
				chats = append(chats, queued{session: it.Tag, el: el})
			}
			continue
		}
		errs++
		if s := l.b.reg.ByID(it.Tag); s != nil {
			l.b.route.refuse(s, el, refusal(stanza.ErrWait, "remote-server-timeout",
				"the upstream connection was lost before the server confirmed this message; it may not have been delivered"))
		}
	}
	if len(chats) > 0 {
		l.b.ob.requeueChats(chats)
	}
	for r, q := range rooms {
		l.b.ob.requeueRoom(r, q)
	}
	resent := len(ev.items) - errs
	l.b.log.Warn("upstream session ended with messages the server had not acknowledged",
		"resent", fmt.Sprint(resent), "errors_to_senders", errs, "not_handled_known", ev.notHandled)
	if l.connected && len(chats) > 0 && l.b.ob.chatsWaiting() == len(chats) {
		l.b.ob.flushOutbox()
	}
}

// resentMaxAge bounds the stamp of a room message the server resent after
// a resume: mod_smacks keeps a session at most smacks_hibernation_time
// (600 s by default), so an older stamp is not the server's.
const resentMaxAge = 15 * time.Minute

// resentWindow is how long after a resume the server's resends may still
// arrive: it sends its whole queue right after <resumed/>. Past it, a
// <delay/> from the account on a room stanza is an occupant's, which must
// not date the archive or hide its presence (trust.go).
const resentWindow = 30 * time.Second

// resentRoomStanza handles what a room sent that the server queued for
// the session while the bouncer was offline or down and resent on a
// resume (XEP-0198 servers mark what they resend with a <delay/> from the
// account), while the room is being joined afresh. The join brings the
// current occupants, so the old presences (our own leave at shutdown
// among them) are history and dropped. A message is history too: it is
// archived and forwarded as the gap fill does, dated by the server's
// delay (within resentMaxAge), with the room's stanza-id, so the gap fill
// finds it already there. It reports whether el was handled here.
func (l *upstreamLink) resentRoomStanza(el *stanza.Element) bool {
	if el.Kind() != "presence" && (el.Kind() != "message" || el.Type() != "groupchat") {
		return false
	}
	bare, _ := splitJID(el.From())
	r := l.b.muc.room(bare)
	if r == nil || r.state() == roomJoined || !hasDelayFrom(el, l.b.account) || time.Now().After(l.resentUntil) {
		return false
	}
	if el.Kind() == "presence" {
		return true
	}
	if isSubject(el) || r.state() == roomLeaving || r.state() == roomIdle {
		return false
	}
	now := time.Now()
	stamp, ok := delayStamp(el, l.b.account, now)
	if !ok || stamp.Before(now.Add(-resentMaxAge)) {
		stamp = now
	}
	m := onlyDelaysFrom(onlyStanzaIDsBy(el, r.jid()), "")
	m = m.DeepCopy()
	m.Append(stanza.New(stanza.NSDelay, "delay", "from", r.jid(), "stamp", stamp.UTC().Format(stampFormat)))
	r.roomForward(m, false)
	return true
}
