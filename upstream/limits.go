package upstream

import (
	"xmppbouncer/stanza"
	"xmppbouncer/wire"
)

// Limits on one stanza from the server. Upstream is the connection every
// local client depends on, and anything a contact or a room occupant sends
// arrives on it, so a stanza past these limits is dropped on its own
// (Handler.Dropped) and the stream goes on; only XML the parser cannot
// resynchronise on ends the session.
//
// Prosody is the reference: util.xmppstream parses a stanza up to 1 MiB by
// default, mod_c2s accepts 256 KiB from a client and mod_s2s 512 KiB from a
// remote server, and it sets no limit on nesting. So what a contact can get
// through the server is always under SoftStanzaBytes. Nesting is bounded so
// that what reaches local clients stays within what their parsers take
// (recursive tree builders in Python and Java clients); legitimate stanzas
// nest a dozen levels at most.
const (
	MaxDepth        = 256
	SoftStanzaBytes = 1 << 20
	// hardStanzaBytes bounds the memory of one stanza's text or attribute,
	// which the XML decoder holds whole; past it the stream is not
	// recoverable. No server that enforces its own input limits sends it.
	hardStanzaBytes = 16 << 20
)

// wireOptions are the reader limits of an upstream session.
func (c *Client) wireOptions() wire.Options {
	return wire.Options{
		QueueLen:        c.cfg.QueueLen,
		MaxStanzaBytes:  hardStanzaBytes,
		MaxDepth:        MaxDepth,
		SoftStanzaBytes: SoftStanzaBytes,
		Oversize: func(head *stanza.Element, why error) {
			// XEP-0198 §4: a dropped stanza still counts for h (smsession.go).
			var tok Token
			switch head.Kind() {
			case "message", "presence", "iq":
				var dup bool
				if tok, dup = c.countIn(); dup {
					return // resent after a resume: dropped before
				}
			}
			c.st.dropped.Add(1)
			c.h.Dropped(head, why)
			c.handledOwn(tok)
		},
		WriteTimeout: c.cfg.PingTimeout,
	}
}
