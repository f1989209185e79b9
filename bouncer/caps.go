package bouncer

import (
	"crypto/sha1"
	"encoding/base64"
	"sort"
	"strings"

	"xmppbouncer/sessions"
	"xmppbouncer/stanza"
)

const capsNode = "https://xmppbouncer.invalid/caps"

// ownFeatures are what the bouncer itself supports as the account's client.
var ownFeatures = []string{
	stanza.NSDiscoInfo, stanza.NSCaps, stanza.NSPing, stanza.NSVersion,
	stanza.NSMUC, stanza.NSCarbons,
	// XEP-0402 §5: the bouncer follows bookmarks itself, so PEP must
	// notify it whatever the clients support.
	stanza.NSBookmarks2 + "+notify",
}

// capsCache learns local clients' features (XEP-0115) so that upstream sees
// the union: PEP (XEP-0163 §4) delivers notifications by the +notify
// features it finds in our caps.
//
// byVer is keyed by a ver the client chose, so it is bounded: an entry
// stays while an available client announces its ver, and at most
// capsCacheMax others are remembered, the least recently used forgotten
// first (a forgotten ver is asked for again when it comes back). asked
// ends with its disco#info query (waiters).
type capsCache struct {
	capsDeps
	byVer    map[string]*capsEntry // client caps ver → features
	asked    map[string]bool
	tick     uint64 // use counter for the LRU order
	lastVer  string
	lastKeys string
}

// capsDeps is what the caps cache needs from the rest of the core (wired
// in wiring.go).
type capsDeps struct {
	account string // the account's bare JID, the queries' from
	// sessions are the local clients: the available ones' features make
	// the union, and their vers stay cached.
	sessions interface{ Available() []*sessions.Session }
	// newID returns a fresh id for a query to a client.
	newID func() string
	// query sends the IQ q (with id) to s and calls answer with the
	// client's reply, or an error when s ends or the query times out.
	query func(s *sessions.Session, id string, q *stanza.Element, answer func(*stanza.Element))
	// changed tells the core the union of features may have changed, so
	// the account's aggregate presence is sent again.
	changed func()
}

type capsEntry struct {
	feats []string
	used  uint64 // tick of the last use
}

// capsCacheMax bounds the caps vers kept that no available client uses.
const capsCacheMax = 64

func newCapsCache(d capsDeps) *capsCache {
	return &capsCache{capsDeps: d, byVer: map[string]*capsEntry{}, asked: map[string]bool{}}
}

// put remembers the features behind ver, then forgets the least recently
// used vers that no available client announces, down to capsCacheMax.
func (c *capsCache) put(ver string, feats []string) {
	c.tick++
	c.byVer[ver] = &capsEntry{feats: feats, used: c.tick}
	if len(c.byVer) <= capsCacheMax {
		return
	}
	inUse := map[string]bool{}
	for _, s := range c.sessions.Available() {
		if cp := s.Presence.Child(stanza.NSCaps, "c"); cp != nil {
			inUse[cp.Get("ver")] = true
		}
	}
	var idle []string
	for v := range c.byVer {
		if !inUse[v] {
			idle = append(idle, v)
		}
	}
	sort.Slice(idle, func(i, j int) bool { return c.byVer[idle[i]].used < c.byVer[idle[j]].used })
	for _, v := range idle[:max(len(idle)-capsCacheMax, 0)] {
		delete(c.byVer, v)
	}
}

// features returns the union of our own and the available clients' features.
func (c *capsCache) features() []string {
	set := map[string]bool{}
	for _, f := range ownFeatures {
		set[f] = true
	}
	for _, s := range c.sessions.Available() {
		if cp := s.Presence.Child(stanza.NSCaps, "c"); cp != nil {
			if e := c.byVer[cp.Get("ver")]; e != nil {
				c.tick++
				e.used = c.tick
				for _, f := range e.feats {
					set[f] = true
				}
			}
		}
	}
	out := make([]string, 0, len(set))
	for f := range set {
		out = append(out, f)
	}
	sort.Strings(out)
	return out
}

// ver computes the XEP-0115 §5.1 verification string of the union.
func (c *capsCache) ver() string {
	feats := c.features()
	key := strings.Join(feats, "\x00")
	if key == c.lastKeys {
		return c.lastVer
	}
	var sb strings.Builder
	sb.WriteString("client/pc//xmppbouncer<")
	for _, f := range feats {
		sb.WriteString(f)
		sb.WriteByte('<')
	}
	sum := sha1.Sum([]byte(sb.String()))
	c.lastKeys, c.lastVer = key, base64.StdEncoding.EncodeToString(sum[:])
	return c.lastVer
}

// element returns our <c/> for the aggregate presence.
func (c *capsCache) element() *stanza.Element {
	return stanza.New(stanza.NSCaps, "c", "hash", "sha-1", "node", capsNode, "ver", c.ver())
}

// infoQuery answers disco#info for the account's client.
func (c *capsCache) infoQuery(node string) *stanza.Element {
	q := stanza.New(stanza.NSDiscoInfo, "query", "node", node)
	q.Append(stanza.New(stanza.NSDiscoInfo, "identity", "category", "client", "type", "pc", "name", "xmppbouncer"))
	for _, f := range c.features() {
		q.Append(stanza.New(stanza.NSDiscoInfo, "feature", "var", f))
	}
	return q
}

// learn asks a client for the features behind a caps ver we have not seen.
func (c *capsCache) learn(s *sessions.Session, presence *stanza.Element) {
	cp := presence.Child(stanza.NSCaps, "c")
	if cp == nil {
		return
	}
	ver, node := cp.Get("ver"), cp.Get("node")
	if ver == "" || c.byVer[ver] != nil || c.asked[ver] {
		return
	}
	c.asked[ver] = true
	id := c.newID()
	q := stanza.New(stanza.NSClient, "iq", "type", "get", "id", id, "from", c.account, "to", s.JID.String())
	q.Append(stanza.New(stanza.NSDiscoInfo, "query", "node", node+"#"+ver))
	c.query(s, id, q, func(resp *stanza.Element) {
		delete(c.asked, ver)
		if resp.Type() != "result" {
			return
		}
		var feats []string
		for _, f := range resp.Child(stanza.NSDiscoInfo, "query").ChildrenNamed(stanza.NSDiscoInfo, "feature") {
			if v := f.Get("var"); v != "" {
				feats = append(feats, v)
			}
		}
		c.put(ver, feats)
		c.changed()
	})
}
