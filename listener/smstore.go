package listener

import (
	"crypto/tls"
	"strconv"
	"time"

	"mellium.im/xmpp/jid"

	"xmppbouncer/stanza"
	"xmppbouncer/wire"
)

// Resumable XEP-0198 sessions that survive a restart. A Handler that
// implements ResumeStore is told each resumable session (its id, resource
// and h, at <enable/>, at each <a/> we send and when it hibernates) and
// asked for an id this process does not know. A <resume/> for a stored,
// unexpired id then revives the session: a new Client on the stored
// resource, <resumed h/> with the stored h, and the Handler rebuilds what
// the client had not acknowledged (Client.Revived). Unknown ids still get
// item-not-found.

// Resumable is a persisted resumable session.
type Resumable struct {
	ID       string
	Resource string
	InH      uint32 // stanzas handled from the client
	Expires  time.Time
	State    any // the Handler's own part, returned by Revived
}

// ResumeStore is implemented by a Handler that keeps resumable sessions
// across restarts.
type ResumeStore interface {
	// SaveResumable records r (without State) and must not block.
	SaveResumable(r Resumable)
	// ForgetResumable drops a session that ended; it must not block.
	ForgetResumable(id string)
	// LoadResumable returns an unexpired stored session; it may read
	// from disk (it runs on the connection's goroutine).
	LoadResumable(id string) (Resumable, bool)
}

// ResumeID is the client's resumption id, "" when it has none.
func (c *Client) ResumeID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sm == nil {
		return ""
	}
	return c.sm.id
}

// Revived returns the stored session a revived client was rebuilt from
// (nil for any other client).
func (c *Client) Revived() *Resumable { return c.revived }

// persist tells the store about c's resumable session. Called with c.mu.
func (c *Client) persist() {
	st, ok := c.srv.h.(ResumeStore)
	if !ok || c.sm == nil || c.sm.id == "" {
		return
	}
	st.SaveResumable(Resumable{ID: c.sm.id, Resource: c.JID.Resourcepart(), InH: c.sm.inH, Expires: time.Now().Add(c.srv.sm.ResumeTimeout)})
}

// unpersist drops a session that ended, unless the server is stopping:
// then it stays for the resume after the restart.
func (s *Server) unpersist(id string) {
	if st, ok := s.h.(ResumeStore); ok && id != "" && !s.isStopping() {
		st.ForgetResumable(id)
	}
}

// lookupStored finds a session an earlier run stored.
func (s *Server) lookupStored(id string) (*Resumable, bool) {
	st, ok := s.h.(ResumeStore)
	if !ok || id == "" {
		return nil, false
	}
	r, found := st.LoadResumable(id)
	if !found || r.Resource == "" || !time.Now().Before(r.Expires) {
		return nil, false
	}
	return &r, true
}

// revive makes a Client for a stored session on a fresh connection: it
// answers <resumed h/> with the stored h and takes the client's h as the
// start of its own count; what it had not acknowledged comes from the
// Handler.
func (s *Server) revive(n *negotiation, newConn func(queueLen int) *wire.Conn, remote string, cs tls.ConnectionState) {
	r := n.revive
	conn := newConn(0)
	c := &Client{
		JID:       n.jid,
		Remote:    remote,
		ID:        s.nextID.Add(1),
		Since:     time.Now(),
		TLS:       tls.VersionName(cs.Version),
		srv:       s,
		mechanism: n.mechanism,
		conn:      conn,
		last:      conn,
		revived:   r,
	}
	c.sm = &streamMgmt{id: r.ID, inH: r.InH, acked: n.resumeH, preConn: conn}
	if !s.register(c) {
		conn.Close(&stanza.StreamError{Condition: "system-shutdown"})
		return
	}
	s.mu.Lock()
	s.resumable[r.ID] = c
	s.mu.Unlock()
	resumed := smElement("resumed", "h", strconv.FormatUint(uint64(r.InH), 10), "previd", r.ID)
	if n.inlineSuccess != nil {
		// SASL2 inline resume (XEP-0388): <resumed/> goes inside <success/>.
		resumed = n.inlineSuccess.Append(resumed)
	}
	conn.Send(resumed)
	s.log.Info("listener: client resumed a session from before a restart", "jid", c.JID.String(), "remote", remote, "id", c.ID, "h", r.InH)
	c.mu.Lock()
	c.persist()
	c.mu.Unlock()
	s.h.Bound(c)
	s.runConn(c, conn)
}

// revivedJID is the full JID of a stored session's resource.
func (s *Server) revivedJID(resource string) (jid.JID, error) {
	return s.bare.WithResource(resource)
}
