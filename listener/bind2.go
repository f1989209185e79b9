package listener

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stream"

	"xmppbouncer/stanza"
)

// maxBind2Tag bounds the client's <tag/> in the resource.
const maxBind2Tag = 64

// bind2Request is what a XEP-0386 <bind/> inside <authenticate/> asked for.
type bind2Request struct {
	sm       bool // <enable xmlns='urn:xmpp:sm:3'/>
	smResume bool // ... with resume='true'
	carbons  bool // <enable xmlns='urn:xmpp:carbons:2'/>
	inactive bool // <inactive xmlns='urn:xmpp:csi:0'/>
}

// bind2 binds the resource for an inline Bind2 request (XEP-0386 §2.3):
// the client's tag, a dot, and a part derived from its user-agent id, so
// the same installation gets the same resource at every login and its
// catch-up cursors and push registration follow it. Without a user-agent
// id the second part is random.
func (n *negotiation) bind2(b *stanza.Element, in *stream.Info) error {
	req := &bind2Request{}
	for _, c := range b.Elements() {
		switch {
		case c.Is(nsSM, "enable"):
			req.sm = true
			r := c.Get("resume")
			req.smResume = r == "true" || r == "1"
		case c.Is(stanza.NSCarbons, "enable"):
			req.carbons = true
		case c.Is(stanza.NSCSI, "inactive"):
			req.inactive = true
		}
	}
	tag := sanitizeTag(b.ChildText(nsBind2, "tag"))
	var suffix string
	if n.ua.ID != "" {
		sum := sha256.Sum256([]byte("xmppbouncer bind2\x00" + n.srv.bare.String() + "\x00" + n.ua.ID))
		suffix = hex.EncodeToString(sum[:4])
	} else {
		suffix = strings.TrimPrefix(randomResource(), "xb-")
	}
	res := suffix
	if tag != "" {
		res = tag + "." + suffix
	}
	full, err := jid.New(n.srv.username, n.srv.domain.Domainpart(), res)
	if err != nil || full.Resourcepart() == n.srv.cfg.ReservedResource {
		full, err = jid.New(n.srv.username, n.srv.domain.Domainpart(), randomResource())
		if err != nil {
			return fmt.Errorf("bind2: generating a resource: %w", err)
		}
	}
	n.jid = full
	n.bind2Req = req
	in.From = full
	return nil
}

// sanitizeTag keeps a tag that is usable in a resourcepart, clipped, and
// drops one that is not.
func sanitizeTag(tag string) string {
	tag = clip(strings.TrimSpace(tag), maxBind2Tag)
	if tag == "" {
		return ""
	}
	if _, err := jid.New("x", "example.org", tag); err != nil {
		return ""
	}
	return tag
}

// bound builds the <bound/> for c's inline Bind2 request and applies what
// can be applied before the core learns of c: stream management. Called
// before c is registered, so nothing else holds c yet.
func (s *Server) bound(c *Client, req *bind2Request) *stanza.Element {
	bound := stanza.New(nsBind2, "bound")
	if req.sm {
		c.mu.Lock()
		bound.Append(c.enableLocked(req.smResume))
		c.mu.Unlock()
	}
	c.bind2Carbons = req.carbons
	if req.carbons {
		// Not in XEP-0386, but what Conversations looks for (XmppConnection:
		// bound/enabled in the carbons namespace) before it skips its own
		// carbons IQ; other clients ignore it.
		bound.Append(stanza.New(stanza.NSCarbons, "enabled"))
	}
	return bound
}
