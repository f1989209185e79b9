package bouncer

import (
	"xmppbouncer/stanza"
)

// While the archive cannot be written (the disk is full, another process
// holds the database), reads no longer wait for the writes queued before
// them (archiver.read): a client that connects or joins a room is served
// at once from what is committed and from memory, and is told that history
// is incomplete for now.

// historyUnavailableText is the notice such a client gets.
const historyUnavailableText = "The bouncer cannot write its archive right now (is its disk full?). " +
	"Live messages reach you, but history and offline messages may be incomplete until it recovers."

// noticeHistoryUnavailable tells the client, once per call, that history
// may be incomplete, when the archive is down; what is the room ("" for
// the offline store) the notice is about.
func (c *client) noticeHistoryUnavailable(what string) {
	b, s := c.b, c.s
	if b.arch == nil || !b.arch.degraded() {
		return
	}
	from := b.domain
	if what != "" {
		from = what
	}
	b.log.Warn("serving a client while the archive is unavailable: history may be incomplete", "jid", s.JID.String(), "for", from)
	c.send(stanza.New(stanza.NSClient, "message", "type", "headline", "from", from, "to", s.JID.String()).
		Append(stanza.New(stanza.NSClient, "body").AppendText(historyUnavailableText)))
}
