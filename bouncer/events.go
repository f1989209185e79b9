package bouncer

import (
	"mellium.im/xmpp/jid"

	"xmppbouncer/listener"
	"xmppbouncer/sessions"
	"xmppbouncer/stanza"
	"xmppbouncer/upstream"
)

// event is anything the loop handles.
type event interface{}

type upOnline struct{ bound jid.JID }
type upStanza struct {
	el  *stanza.Element // nil: only acknowledge tok (upsm.go)
	tok upstream.Token
}
type upOffline struct{ err error }
type upDropped struct {
	head *stanza.Element
	why  error
}

type clientBound struct {
	id      uint64
	jid     jid.JID
	conn    sessions.Conn
	carbons bool // XEP-0386: carbons enabled inline with Bind2
}
type clientStanza struct {
	id uint64
	el *stanza.Element
}
type clientClosed struct {
	id      uint64
	err     error
	unacked []*stanza.Element // XEP-0198: sent, never acknowledged
}

// clientHibernation says a client's XEP-0198 session may have hibernated
// or resumed; the loop asks the client which.
type clientHibernation struct {
	id uint64
	c  interface{ Hibernating() bool }
}
type funcEvent struct{ f func() }

// UpstreamHandler adapts the bouncer to upstream.Handler: each callback
// becomes an event on the loop. Sends block when the loop is busy, which is
// the backpressure we want on the reader.
type UpstreamHandler struct{ b *Bouncer }

// UpstreamHandler returns the upstream.Handler for this bouncer.
func (b *Bouncer) UpstreamHandler() UpstreamHandler { return UpstreamHandler{b} }

// Online implements upstream.Handler.
func (h UpstreamHandler) Online(bound jid.JID) { h.b.events <- upOnline{bound} }

// Stanza implements upstream.Handler.
func (h UpstreamHandler) Stanza(el *stanza.Element) {
	h.b.stats.count(FromUpstream, el)
	if h.b.arch != nil {
		h.b.arch.admit() // backpressure from a congested archive
	}
	h.b.events <- upStanza{el: el}
}

// Offline implements upstream.Handler.
func (h UpstreamHandler) Offline(err error) { h.b.events <- upOffline{err} }

// Dropped implements upstream.Handler.
func (h UpstreamHandler) Dropped(head *stanza.Element, why error) {
	h.b.events <- upDropped{head, why}
}

// ClientHandler adapts the bouncer to listener.Handler.
type ClientHandler struct{ b *Bouncer }

// ClientHandler returns the listener.Handler for this bouncer.
func (b *Bouncer) ClientHandler() ClientHandler { return ClientHandler{b} }

// Bound implements listener.Handler.
func (h ClientHandler) Bound(c *listener.Client) {
	h.b.events <- clientBound{id: c.ID, jid: c.JID, conn: c, carbons: c.Bind2Carbons()}
}

// Stanza implements listener.Handler.
func (h ClientHandler) Stanza(c *listener.Client, el *stanza.Element) {
	h.b.stats.count(FromClients, el)
	h.b.events <- clientStanza{id: c.ID, el: el}
}

// Closed implements listener.Handler.
func (h ClientHandler) Closed(c *listener.Client, err error) {
	h.b.events <- clientClosed{id: c.ID, err: err, unacked: c.Unacked()}
}

// Hibernated implements listener.ResumeHandler.
func (h ClientHandler) Hibernated(c *listener.Client) {
	h.b.events <- clientHibernation{id: c.ID, c: c}
}

// Resumed implements listener.ResumeHandler.
func (h ClientHandler) Resumed(c *listener.Client) {
	h.b.events <- clientHibernation{id: c.ID, c: c}
}
