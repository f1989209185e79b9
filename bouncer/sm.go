package bouncer

import (
	"xmppbouncer/sessions"
	"xmppbouncer/stanza"
)

// clientHibernation follows a client's XEP-0198 session into and out of
// hibernation. A hibernated session keeps its claims and presence, so its
// rooms see no leave, and what is sent to it queues for the resume.
func (b *Bouncer) clientHibernation(ev clientHibernation) {
	s := b.reg.ByID(ev.id)
	if s == nil {
		return
	}
	h := ev.c.Hibernating()
	if h != s.Hibernated {
		s.Hibernated = h
		b.log.Info("client session", "jid", s.JID.String(), "hibernated", h)
	}
}

// rerouteUnacked places the messages a client's stream management never
// saw acknowledged, once its session has ended (s is nil when it was
// replaced). As mod_smacks does, only chats and normal messages with a
// body are worth it; groupchat stays behind the per-client room cursor.
// Nothing bounces back to the sender.
func (b *Bouncer) rerouteUnacked(s *sessions.Session, els []*stanza.Element) {
	n := 0
	for _, el := range els {
		if el.Kind() != "message" || el.Child(stanza.NSClient, "body") == nil || el.Child(stanza.NSMAM, "result") != nil {
			continue
		}
		switch el.Type() {
		case "", "normal", "chat":
		default:
			continue
		}
		// A copy: el may still be referenced by the ended connection.
		b.toAllAvailable(el.ShallowCopy())
		n++
	}
	if n > 0 {
		who := "replaced session"
		if s != nil {
			who = s.JID.String()
		}
		b.log.Info("re-routed unacknowledged messages", "from_session", who, "count", n, "clients", len(b.reg.Available()))
	}
}
