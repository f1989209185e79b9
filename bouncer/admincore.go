package bouncer

// The core's side of the XEP-0050 admin commands (package admin): what the
// commands may ask of the core, as snapshots and actions run on the loop,
// and the settings the core keeps for them (the retention in force, the
// pruner's wake-up). The commands themselves, their forms, texts and
// sessions live in bouncer/admin.

import (
	"time"

	"xmppbouncer/bouncer/admin"
	"xmppbouncer/listener"
	"xmppbouncer/sessions"
	"xmppbouncer/stanza"
	"xmppbouncer/upstream"
)

// The commands' namespace and nodes, for the tests and callers of the core.
const (
	NSCommands          = admin.NSCommands
	AdminNodeStatus     = admin.NodeStatus
	AdminNodeClients    = admin.NodeClients
	AdminNodeRooms      = admin.NodeRooms
	AdminNodeHistory    = admin.NodeHistory
	AdminNodeReconnect  = admin.NodeReconnect
	AdminNodeFastTokens = admin.NodeFastTokens
)

// newAdminCommands builds the commands on the core b.
func newAdminCommands(b *Bouncer) *admin.Commands {
	opt := admin.Options{
		Domain:      b.domain,
		DefaultNick: b.opt.Account.Localpart(),
		Version:     b.opt.Version,
		DBTimeout:   b.opt.DBTimeout,
		Log:         b.log,
	}
	if b.opt.Archive != nil {
		opt.Store = b.opt.Archive
	}
	if db, ok := b.opt.Archive.(FastTokenDB); ok {
		opt.Fast = db
	}
	return admin.New(adminCore{b}, opt)
}

// adminCaller names the local client s for the commands.
func adminCaller(s *sessions.Session) admin.Caller {
	return admin.Caller{ID: s.ID, JID: s.JID.String(), Resource: s.JID.Resourcepart()}
}

// adminCore is the core as the commands see it (admin.Core). Its methods
// run on the loop, except Post.
type adminCore struct{ b *Bouncer }

func (c adminCore) Send(client uint64, el *stanza.Element) bool {
	s := c.b.reg.ByID(client)
	if s == nil {
		return false
	}
	c.b.clients.of(s).send(el)
	return true
}

func (c adminCore) SendUp(el *stanza.Element) { c.b.sendUp(el) }

func (c adminCore) AskUpstream(iq *stanza.Element, answer func(*stanza.Element)) bool {
	return c.b.iq.sendInternal(iq, answer)
}

func (c adminCore) Post(f func()) { c.b.post(f) }

// upstreamStatus is implemented by upstream.Client.
type upstreamStatus interface{ Status() upstream.Status }

// upstreamReconnecter is implemented by upstream.Client.
type upstreamReconnecter interface{ Reconnect() }

func (c adminCore) Upstream() admin.Upstream {
	u := admin.Upstream{Online: c.b.upl.online(), JID: c.b.upl.fullJID()}
	if us, ok := c.b.up.(upstreamStatus); ok {
		st := us.Status()
		u.Status = &st
	}
	_, u.CanReconnect = c.b.up.(upstreamReconnecter)
	return u
}

// clientInfo, smState and userAgent are implemented by listener.Client.
type (
	clientInfo interface {
		Info() (remote string, since time.Time, tlsVersion, mechanism string)
	}
	smState interface {
		SMState() (enabled, resumable bool, unacked int)
	}
	userAgent interface{ UserAgent() listener.UserAgent }
)

func (c adminCore) Clients() []admin.Client {
	var out []admin.Client
	for _, s := range c.b.reg.All() {
		ac := admin.Client{
			ID: s.ID, JID: s.JID.String(), Resource: s.JID.Resourcepart(),
			Available: s.Available(), Show: s.Show, AvailableSince: s.AvailableSince,
			Inactive: s.Inactive, Hibernated: s.Hibernated, HibernatedAt: s.HibernatedAt,
			Rooms: len(c.b.reg.RoomsOf(s)),
		}
		if ci, ok := s.Conn.(clientInfo); ok {
			ac.HasConnInfo = true
			ac.Remote, ac.Since, ac.TLSVersion, ac.Mechanism = ci.Info()
		}
		if u, ok := s.Conn.(userAgent); ok {
			ua := u.UserAgent()
			ac.Software, ac.Device, ac.AgentID = ua.Software, ua.Device, ua.ID
		}
		if st, ok := s.Conn.(smState); ok {
			ac.SMKnown = true
			ac.SMOn, ac.SMResumable, ac.SMUnacked = st.SMState()
		}
		out = append(out, ac)
	}
	return out
}

func (c adminCore) Rooms() []admin.Room { return c.b.muc.adminRooms() }

func (c adminCore) Room(jid string) (admin.Room, bool) { return c.b.muc.adminRoom(jid) }

func (c adminCore) Retention() time.Duration { return c.b.retention.get() }

func (c adminCore) Disconnect(client uint64, e *stanza.StreamError) {
	if s := c.b.reg.ByID(client); s != nil {
		s.Conn.Close(e)
	}
}

func (c adminCore) Reconnect() bool {
	r, ok := c.b.up.(upstreamReconnecter)
	if ok {
		r.Reconnect()
	}
	return ok
}

func (c adminCore) JoinRoom(room, nick, password string) (bool, string) {
	return c.b.muc.adminJoin(room, nick, password)
}

func (c adminCore) KeepRoom(room, nick, password string) { c.b.muc.adminKeep(room, nick, password) }

func (c adminCore) ReleaseRoom(room string, leave bool) { c.b.muc.adminRelease(room, leave) }

func (c adminCore) SetRetention(d time.Duration, prune bool) {
	c.b.retention.set(d, prune)
}
