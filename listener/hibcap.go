package listener

import (
	"fmt"
	"slices"
	"time"
)

// Caps on hibernated XEP-0198 sessions. Each keeps its queue and its
// presence (the account's other clients and its rooms still see it), so
// clients that drop their connections again and again, each with a fresh
// resource, must not pile up until resume_timeout. Past a cap the oldest
// hibernated session expires at once, exactly as at its timeout: its
// unacknowledged chats go to the other clients or the offline store.
const (
	defaultMaxHibernated           = 100
	defaultMaxHibernatedPerAddress = 20
)

type hibernated struct {
	c     *Client
	since time.Time
	gen   uint64
	ip    string
}

// capHibernated enforces the caps after newest hibernated: first the one on
// its address, then the one on all. Only hibernated sessions count, and only
// ones that hibernated before newest are expired (never newest itself).
func (s *Server) capHibernated(newest *Client) {
	s.mu.Lock()
	all := make([]*Client, 0, len(s.clients))
	for _, c := range s.clients {
		all = append(all, c)
	}
	s.mu.Unlock()
	var hs []hibernated
	var ip string
	for _, c := range all {
		c.mu.Lock()
		if c.conn == nil && !c.ended && c.sm != nil {
			hs = append(hs, hibernated{c: c, since: c.hibSince, gen: c.hibGen, ip: c.ip})
		}
		if c == newest {
			ip = c.ip
		}
		c.mu.Unlock()
	}
	if len(hs) <= s.sm.MaxHibernatedPerAddress && len(hs) <= s.sm.MaxHibernated {
		return
	}
	slices.SortFunc(hs, func(a, b hibernated) int { return a.since.Compare(b.since) })
	onIP := 0
	for _, h := range hs {
		if h.ip == ip {
			onIP++
		}
	}
	evict := map[*Client]string{}
	for _, h := range hs {
		if onIP <= s.sm.MaxHibernatedPerAddress {
			break
		}
		if h.ip == ip && h.c != newest {
			evict[h.c] = fmt.Sprintf("more than %d hibernated sessions from %s", s.sm.MaxHibernatedPerAddress, ip)
			onIP--
		}
	}
	left := len(hs) - len(evict)
	for _, h := range hs {
		if left <= s.sm.MaxHibernated {
			break
		}
		if _, done := evict[h.c]; !done && h.c != newest {
			evict[h.c] = fmt.Sprintf("more than %d hibernated sessions", s.sm.MaxHibernated)
			left--
		}
	}
	for _, h := range hs {
		why, ok := evict[h.c]
		if !ok {
			continue
		}
		s.log.Info("listener: hibernated session expired early", "jid", h.c.JID.String(), "id", h.c.ID, "hibernated_for", time.Since(h.since).Round(time.Second), "reason", why)
		// The gen check leaves it alone if it was resumed meanwhile.
		s.endHibernated(h.c, h.gen, true, fmt.Errorf("listener: hibernated session expired early: %s", why))
	}
}
