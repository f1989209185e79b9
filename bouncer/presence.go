package bouncer

import (
	"log/slog"
	"strconv"
	"time"

	"xmppbouncer/sessions"
	"xmppbouncer/stanza"
)

// presenceState caches what a newly available client must be told
// (RFC 6121 §4.4.2: the server sends contacts' presence after initial
// presence) and what upstream last heard from us. It builds the account's
// aggregate presence and keeps the contacts' cache across upstream
// reconnects, reaching the core through presenceDeps (wiring.go).
type presenceState struct {
	presenceDeps
	contacts map[string]*stanza.Element // full JID → last available presence
	subs     map[string]*stanza.Element // bare JID → pending subscribe request
	lastUp   string                     // serialised aggregate last sent upstream
	// unconfirmed are the contacts cached before an upstream reconnect
	// that the new session has not sent presence for yet.
	unconfirmed map[string]bool
	epoch       int  // upstream sessions so far, to tell old timers apart
	capLogged   bool // presenceCap was reached and said so
}

// presenceDeps is what the account's presence needs from the rest of the
// core.
type presenceDeps struct {
	account string // the account's bare JID
	log     *slog.Logger
	// sessions are the local clients whose presences make the aggregate.
	sessions interface{ Available() []*sessions.Session }
	// detachedShow and detachedStatus are the aggregate with no client
	// available.
	detachedShow, detachedStatus string
	// online tells whether the upstream session is up.
	online func() bool
	// caps is our <c/> (caps.go).
	caps func() *stanza.Element
	// sendUp sends el to the upstream session.
	sendUp func(el *stanza.Element) bool
	// toClients delivers el to every available client.
	toClients func(el *stanza.Element)
	// reply sends el to one local session.
	reply func(s *sessions.Session, el *stanza.Element)
	// post runs f on the loop, unless it has stopped.
	post func(f func())

	// The rest is for the clients' presence (clientPresence and
	// broadcastPresence) and the upstream's (upstreamPresence).

	domain string // the account's server, in the errors we answer with
	// targetOf classifies the "to" of a client's stanza (route.go).
	targetOf func(el *stanza.Element) (target, bool)
	// roomPresence handles a client's presence to a room, and reports
	// whether it did (mucjoin.go).
	roomPresence func(s *sessions.Session, t target, el *stanza.Element) bool
	// forwardUp sends a client's directed presence upstream (outbox.go).
	forwardUp func(s *sessions.Session, t target, el *stanza.Element)
	// feedOffline and replayChats follow a client's initial presence: the
	// offline messages (XEP-0160 §3), then the chats a crash left
	// unconfirmed (chatq.go).
	feedOffline, replayChats func(s *sessions.Session)
	// learnCaps notes the caps in a client's presence (caps.go).
	learnCaps func(s *sessions.Session, el *stanza.Element)
	// roomsFollowPresence tells the rooms the account's presence changed.
	roomsFollowPresence func()
	// toRoom hands a presence from a room the account is in (or joining)
	// to that room, and reports whether it was one.
	toRoom func(el *stanza.Element) bool
	// fullJID is the upstream session's full JID.
	fullJID func() string
}

// presenceCap bounds each of contacts and subs. Anyone can send the
// account presence, and a remote server can make up any number of full
// JIDs of its own domain, so past the cap a new sender's presence is still
// delivered to the clients but not remembered for later ones; an address
// already known is still updated.
const presenceCap = 10000

// remember stores el under key in m (contacts or subs) unless the map is
// full and key is new.
func (p *presenceState) remember(m map[string]*stanza.Element, key string, el *stanza.Element) {
	if _, known := m[key]; !known && len(m) >= presenceCap {
		if !p.capLogged {
			p.capLogged = true
			p.log.Warn("too many contacts' presences to remember; new ones are delivered but not kept for later clients", "cap", presenceCap)
		}
		return
	}
	m[key] = el
}

// contactGrace is how long a new upstream session has to confirm a cached
// contact's presence before that contact is taken as gone offline during
// the outage. Servers answer the initial presence's probes at once.
const contactGrace = 3 * time.Second

// confirmContacts starts over the cached contacts on a new upstream
// session: each must be confirmed by a fresh presence within contactGrace,
// or the clients are told it is unavailable.
func (p *presenceState) confirmContacts() {
	p.epoch++
	epoch := p.epoch
	p.unconfirmed = map[string]bool{}
	for jid := range p.contacts {
		p.unconfirmed[jid] = true
	}
	if len(p.unconfirmed) == 0 {
		return
	}
	time.AfterFunc(contactGrace, func() {
		p.post(func() {
			if p.epoch != epoch || !p.online() {
				return
			}
			for jid := range p.unconfirmed {
				delete(p.contacts, jid)
				p.log.Debug("contact went offline during the upstream outage", "jid", jid)
				p.toClients(stanza.New(stanza.NSClient, "presence", "type", "unavailable", "from", jid, "to", p.account))
			}
			p.unconfirmed = nil
		})
	})
}

// upstreamOnline: a new upstream session hears the aggregate presence
// afresh, and must confirm the cached contacts.
func (p *presenceState) upstreamOnline() {
	p.lastUp = ""
	p.updateAggregate()
	p.confirmContacts()
}

// sendCached tells a newly available client the contacts' presences and
// the pending subscription requests (RFC 6121 §4.4.2, §3.1.3).
func (p *presenceState) sendCached(s *sessions.Session) {
	for _, el := range p.contacts {
		p.reply(s, el.With("to", s.JID.String()))
	}
	for _, el := range p.subs {
		p.reply(s, el.With("to", s.JID.String()))
	}
}

// subscriptionAnswered forgets the pending request from bare: a client
// approved or refused it.
func (p *presenceState) subscriptionAnswered(bare string) { delete(p.subs, bare) }

func newPresenceState(d presenceDeps) *presenceState {
	return &presenceState{presenceDeps: d, contacts: map[string]*stanza.Element{}, subs: map[string]*stanza.Element{}}
}

// showRank orders shows for the aggregate: chat > available > dnd > away > xa.
func showRank(show string) int {
	switch show {
	case "chat":
		return 5
	case "":
		return 4
	case "dnd":
		return 3
	case "away":
		return 2
	case "xa":
		return 1
	}
	return 0
}

// clientPresence handles presence from a local client.
func (p *presenceState) clientPresence(s *sessions.Session, el *stanza.Element) {
	t, ok := p.targetOf(el)
	if !ok {
		p.reply(s, errorFromServer(el, s, p.domain, stanza.ErrModify, "jid-malformed", ""))
		return
	}
	if t.to == "" {
		p.broadcastPresence(s, el)
		return
	}
	if t.sibling != nil {
		p.reply(t.sibling, el.With("from", s.JID.String(), "to", t.sibling.JID.String()))
		return
	}
	if p.roomPresence(s, t, el) {
		return
	}
	switch el.Type() {
	case "subscribed", "unsubscribed":
		tb, _ := splitJID(t.to)
		p.subscriptionAnswered(tb)
	}
	p.forwardUp(s, t, el.With("from", "", "to", t.to))
}

// broadcastPresence handles a client's presence without "to" (RFC 6121
// §4.2 and §4.5): it is reflected to the client and its siblings, and
// becomes part of the account's one aggregate presence upstream.
func (p *presenceState) broadcastPresence(s *sessions.Session, el *stanza.Element) {
	switch el.Type() {
	case "":
		first := !s.Available()
		if first {
			s.AvailableSince = time.Now()
		}
		s.Presence = el
		s.Show = el.ChildText(stanza.NSClient, "show")
		s.Priority, _ = strconv.Atoi(el.ChildText(stanza.NSClient, "priority"))
		p.reflectPresence(s, el)
		if first {
			p.sendSiblingsTo(s)
			p.sendCached(s)
			// XEP-0160 §3: offline messages follow initial presence.
			p.feedOffline(s)
			p.replayChats(s) // after a crash (chatq.go)
		}
		p.learnCaps(s, el)
	case "unavailable":
		if !s.Available() {
			return
		}
		s.Presence = nil
		p.reflectPresence(s, el)
	default:
		return
	}
	p.updateAggregate()
	p.roomsFollowPresence()
}

// reflectPresence sends s's presence to itself and its available siblings.
//
// A hibernated sibling is not queued an available presence: with many
// clients that each hibernate, every one would hold one from each client
// that came after it (memory growing with the square of their number).
// It gets its siblings' current presence when it resumes instead
// (resumedSiblings); unavailable ones are queued as usual, so it also
// learns who left meanwhile.
func (p *presenceState) reflectPresence(s *sessions.Session, el *stanza.Element) {
	from := s.JID.String()
	for _, o := range p.sessions.Available() {
		if o == s {
			continue
		}
		if o.Hibernated && el.Type() == "" {
			o.SiblingsMissed = true
			continue
		}
		p.reply(o, el.With("from", from, "to", o.JID.String()))
	}
	p.reply(s, el.With("from", from, "to", from))
}

// sendSiblingsTo tells a newly available client about its siblings.
func (p *presenceState) sendSiblingsTo(s *sessions.Session) {
	for _, o := range p.sessions.Available() {
		if o != s {
			p.reply(s, o.Presence.With("from", o.JID.String(), "to", s.JID.String()))
		}
	}
}

// resumedSiblings gives a resumed client the current presence of the
// siblings whose available presence it was not queued while hibernated.
func (p *presenceState) resumedSiblings(s *sessions.Session) {
	if !s.SiblingsMissed {
		return
	}
	s.SiblingsMissed = false
	if s.Available() {
		p.sendSiblingsTo(s)
	}
}

// clientGone tells the siblings that s is no longer available.
func (p *presenceState) clientGone(s *sessions.Session) {
	if !s.Available() {
		return
	}
	s.Presence = nil
	un := stanza.New(stanza.NSClient, "presence", "type", "unavailable", "from", s.JID.String())
	for _, o := range p.sessions.Available() {
		if o != s {
			p.reply(o, un.With("to", o.JID.String()))
		}
	}
}

// aggregate builds the account's presence from the available clients: the
// highest priority wins, ties broken by show. With no client available it
// is the configured detached presence.
func (p *presenceState) aggregate() (show, status string, priority int) {
	var best *sessions.Session
	for _, s := range p.sessions.Available() {
		if best == nil || s.Priority > best.Priority ||
			(s.Priority == best.Priority && showRank(s.Show) > showRank(best.Show)) {
			best = s
		}
	}
	if best == nil {
		show = p.detachedShow
		if show == "available" {
			show = ""
		}
		return show, p.detachedStatus, 0
	}
	return best.Show, best.Presence.ChildText(stanza.NSClient, "status"), best.Priority
}

// updateAggregate sends the aggregate presence upstream when it changed.
func (p *presenceState) updateAggregate() {
	if !p.online() {
		return
	}
	show, status, prio := p.aggregate()
	// RFC 6121 §8.5.2.1.1: the server would hold bare-JID messages back
	// from a negative priority. The bouncer must receive them to apply the
	// priorities of its own clients (and store offline), so upstream never
	// sees one below zero.
	prio = max(prio, 0)
	el := stanza.New(stanza.NSClient, "presence")
	if show != "" {
		el.Append(stanza.New(stanza.NSClient, "show").AppendText(show))
	}
	if status != "" {
		el.Append(stanza.New(stanza.NSClient, "status").AppendText(status))
	}
	if prio != 0 {
		el.Append(stanza.New(stanza.NSClient, "priority").AppendText(strconv.Itoa(prio)))
	}
	el.Append(p.caps())
	key := el.String()
	if key == p.lastUp {
		return
	}
	p.lastUp = key
	p.sendUp(el)
}

// upstreamPresence handles presence from upstream.
func (p *presenceState) upstreamPresence(el *stanza.Element) {
	if p.toRoom(el) {
		return
	}
	if el.From() == p.fullJID() {
		return // our own presence reflected: the upstream resource is invisible
	}
	p.fromContact(el)
}

// fromContact remembers a contact's presence (or subscription request) for
// the clients that become available later, and delivers it to those that
// are now.
func (p *presenceState) fromContact(el *stanza.Element) {
	from := el.From()
	bare, _ := splitJID(from)
	delete(p.unconfirmed, from)
	switch el.Type() {
	case "":
		p.remember(p.contacts, from, el)
	case "unavailable":
		delete(p.contacts, from)
	case "subscribe":
		p.remember(p.subs, bare, el)
	case "unsubscribe", "unsubscribed", "subscribed":
		delete(p.subs, bare)
	case "probe":
		return
	}
	p.toClients(el)
}
