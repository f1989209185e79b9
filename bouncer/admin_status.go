package bouncer

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"time"

	"xmppbouncer/sessions"
	"xmppbouncer/stanza"
	"xmppbouncer/upstream"
)

// upstreamStatus is implemented by upstream.Client.
type upstreamStatus interface{ Status() upstream.Status }

// upstreamReconnecter is implemented by upstream.Client.
type upstreamReconnecter interface{ Reconnect() }

// clientInfo is implemented by listener.Client.
type clientInfo interface {
	Info() (remote string, since time.Time, tlsVersion, mechanism string)
}

const adminStampFormat = "2006-01-02 15:04:05 MST"

// cmdStatus shows where everything stands, in one result form. The archive
// size comes from disk, so the answer is sent from a goroutine's event.
func (b *Bouncer) cmdStatus(c *adminCall) {
	x := dataForm("result", "xmppbouncer status", "")
	b.statusUpstream(x)
	field(x, "text-multi", "clients", fmt.Sprintf("Local clients (%d)", b.reg.Len()), b.clientLines()...)
	field(x, "text-multi", "rooms", fmt.Sprintf("Rooms (%d)", len(b.rooms)), b.roomLines()...)
	retention := time.Duration(b.admin.retention.Load())
	db := b.opt.Archive
	type size struct {
		msgs, bytes int64
		err         error
	}
	later(b, func() size {
		if db == nil {
			return size{err: fmt.Errorf("no archive configured")}
		}
		ctx, cancel := context.WithTimeout(context.Background(), b.opt.DBTimeout)
		defer cancel()
		m, by, err := db.Size(ctx)
		return size{m, by, err}
	}, func(sz size) {
		if sz.err != nil {
			field(x, "text-single", "archive-messages", "Archived messages", "unknown: "+sz.err.Error())
		} else {
			field(x, "text-single", "archive-messages", "Archived messages", fmt.Sprint(sz.msgs))
			field(x, "text-single", "archive-bytes", "Archive size on disk", humanBytes(sz.bytes))
		}
		field(x, "text-single", "retention", "History retention", retentionText(retention))
		field(x, "text-single", "version", "Version", fmt.Sprintf("xmppbouncer %s (%s)", b.opt.Version, runtime.Version()))
		field(x, "text-single", "uptime", "Up since", b.admin.started.Format(adminStampFormat)+" ("+time.Since(b.admin.started).Round(time.Second).String()+")")
		b.adminDone(c, x)
	})
}

// statusUpstream adds the upstream connection's fields.
func (b *Bouncer) statusUpstream(x *stanza.Element) {
	state := "offline"
	if b.online {
		state = "connected as " + b.upFull
	}
	field(x, "text-single", "upstream", "Upstream", state)
	us, ok := b.up.(upstreamStatus)
	if !ok {
		return
	}
	st := us.Status()
	if st.Connected {
		field(x, "text-single", "upstream-since", "Connected since", st.ConnectedSince.Format(adminStampFormat)+" ("+time.Since(st.ConnectedSince).Round(time.Second).String()+")")
	}
	field(x, "text-single", "upstream-server", "Server address", orNone(st.Server))
	field(x, "text-single", "upstream-sasl", "SASL mechanism", orNone(st.Mechanism))
	field(x, "text-single", "upstream-tls", "TLS", orNone(st.TLSVersion))
	field(x, "text-single", "upstream-reconnects", "Reconnects since start", fmt.Sprint(st.Reconnects))
	lastErr := "none"
	if st.LastError != "" {
		lastErr = st.LastError + " (" + st.LastErrorAt.Format(adminStampFormat) + ")"
	}
	field(x, "text-single", "upstream-last-error", "Last error", lastErr)
	field(x, "text-single", "upstream-traffic", "Traffic", humanBytes(int64(st.BytesIn))+" in, "+humanBytes(int64(st.BytesOut))+" out")
}

// clientLines describes each local client on one line.
func (b *Bouncer) clientLines() []string {
	var out []string
	for _, s := range b.reg.All() {
		out = append(out, b.clientLine(s))
	}
	if len(out) == 0 {
		out = []string{"none"}
	}
	return out
}

func (b *Bouncer) clientLine(s *sessions.Session) string {
	parts := []string{s.JID.Resourcepart()}
	if ci, ok := s.Conn.(clientInfo); ok {
		remote, since, tlsv, mech := ci.Info()
		parts = append(parts, "from "+remote, "since "+since.Format(adminStampFormat), orNone(tlsv), mech)
	}
	parts = append(parts, userAgentParts(s)...)
	switch {
	case s.Available() && s.Show != "":
		parts = append(parts, "available ("+s.Show+")")
	case s.Available():
		parts = append(parts, "available")
	case !s.AvailableSince.IsZero():
		parts = append(parts, "unavailable (was online since "+s.AvailableSince.Format(adminStampFormat)+")")
	default:
		parts = append(parts, "no presence yet")
	}
	// XEP-0352 and XEP-0198 state.
	if s.Inactive {
		parts = append(parts, "CSI inactive")
	} else {
		parts = append(parts, "CSI active")
	}
	parts = append(parts, smText(s))
	if rooms := b.reg.RoomsOf(s); len(rooms) > 0 {
		parts = append(parts, "in "+plural(int64(len(rooms)), "room", "rooms"))
	}
	return strings.Join(parts, ", ")
}

// smState is implemented by listener.Client.
type smState interface {
	SMState() (enabled, resumable bool, unacked int)
}

// smText is a client's XEP-0198 state: off, on (resumable or not) with
// what it has not acknowledged, or hibernated waiting for a resume.
func smText(s *sessions.Session) string {
	if s.Hibernated {
		out := "SM hibernated"
		if !s.HibernatedAt.IsZero() {
			out += " since " + s.HibernatedAt.Format(adminStampFormat)
		}
		if st, ok := s.Conn.(smState); ok {
			_, _, n := st.SMState()
			out += ", " + plural(int64(n), "stanza", "stanzas") + " waiting for the resume"
		}
		return out
	}
	st, ok := s.Conn.(smState)
	if !ok {
		return "SM unknown"
	}
	on, resumable, n := st.SMState()
	switch {
	case !on:
		return "SM off"
	case resumable:
		return "SM on (resumable, " + strconv.Itoa(n) + " unacked)"
	default:
		return "SM on (no resumption, " + strconv.Itoa(n) + " unacked)"
	}
}

// roomLines describes each room on one line.
func (b *Bouncer) roomLines() []string {
	var out []string
	for _, r := range b.sortedRooms() {
		out = append(out, b.roomLine(r))
	}
	if len(out) == 0 {
		out = []string{"none"}
	}
	return out
}

func (b *Bouncer) roomLine(r *Room) string {
	n := len(r.Occupants)
	if _, ok := r.Occupants[r.Nick]; !ok && r.Self != nil {
		n++ // the account itself
	}
	parts := []string{r.JID + " as " + r.Nick, roomStateName(r.State), plural(int64(n), "occupant", "occupants")}
	if r.Kept {
		parts = append(parts, "kept ("+b.keptBy(r.JID)+")")
	}
	var claim []string
	for _, s := range b.reg.Claimants(r.JID) {
		claim = append(claim, s.JID.Resourcepart())
	}
	if len(claim) > 0 {
		parts = append(parts, "claimed by "+strings.Join(claim, ", "))
	} else {
		parts = append(parts, "no local client in it")
	}
	return strings.Join(parts, ", ")
}

func roomStateName(s roomState) string {
	switch s {
	case roomIdle:
		return "not joined"
	case roomJoining:
		return "joining"
	case roomSyncing:
		return "syncing"
	case roomJoined:
		return "joined"
	case roomLeaving:
		return "leaving"
	}
	return "unknown"
}

// clientsNobody is the clients form's choice to disconnect nobody. It is
// not empty (an empty option value crashes Profanity) and, in brackets,
// not a resource anyone picks.
const clientsNobody = "(nobody)"

// cmdClients lists the local clients and disconnects the one chosen.
func (b *Bouncer) cmdClients(c *adminCall) {
	if c.form == nil {
		x := dataForm("form", "Local clients", "Choose a client to disconnect, or nobody to only look.")
		fixedLines(x, "client", b.clientLines())
		f := field(x, "list-single", "disconnect", "Disconnect", clientsNobody)
		option(f, "Nobody (only look)", clientsNobody)
		for _, s := range b.reg.All() {
			if res := s.JID.Resourcepart(); res != clientsNobody {
				option(f, res, res)
			}
		}
		b.adminForm(c, x)
		return
	}
	res := c.value("disconnect")
	if res == "" || res == clientsNobody {
		b.adminDone(c, nil, info("Nobody disconnected."))
		return
	}
	s := b.reg.ByResource(res)
	if s == nil {
		b.adminDone(c, nil, fault("No client is connected on resource "+res+"."))
		return
	}
	b.log.Info("disconnecting a client on request", "jid", s.JID.String(), "by", c.s.JID.String())
	// Answer first: the client may be the one asking.
	b.adminDone(c, nil, info("Disconnected "+res+"."))
	s.Conn.Close(&stanza.StreamError{Condition: "policy-violation", Text: "disconnected by " + c.s.JID.Resourcepart() + " with the bouncer's clients command"})
}

// cmdReconnect drops the upstream session and connects again, once the
// user has confirmed it in a form: every room sees the account leave and
// come back, so one stray Enter in a command list must not do it.
func (b *Bouncer) cmdReconnect(c *adminCall) {
	r, ok := b.up.(upstreamReconnecter)
	if !ok {
		b.adminDone(c, nil, fault("This upstream cannot reconnect on request."))
		return
	}
	if !c.continued {
		x := dataForm("form", "Reconnect upstream", "Drop the upstream session and connect again. Local clients stay connected, but every room sees the account leave and join again.")
		required(field(x, "boolean", "confirm", "Yes, reconnect now", "0"))
		b.adminForm(c, x)
		return
	}
	if !boolValue(c.value("confirm")) {
		b.adminDone(c, nil, info("Not reconnected: the confirmation was not ticked."))
		return
	}
	b.log.Info("upstream reconnect requested", "by", c.s.JID.String())
	r.Reconnect()
	b.adminDone(c, nil, info("Reconnecting upstream; local clients stay connected. Run status to see it back."))
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func retentionText(d time.Duration) string {
	if d <= 0 {
		return "forever"
	}
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}
