package admin

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"time"

	"xmppbouncer/stanza"
)

// status shows where everything stands, in one result form. The archive
// size comes from disk, so the answer is sent from a goroutine's event.
func (a *Commands) status(c *call) {
	x := dataForm("result", "xmppbouncer status", "")
	a.statusUpstream(x)
	clients := a.core.Clients()
	field(x, "text-multi", "clients", fmt.Sprintf("Local clients (%d)", len(clients)), clientLines(clients)...)
	rooms := a.core.Rooms()
	field(x, "text-multi", "rooms", fmt.Sprintf("Rooms (%d)", len(rooms)), a.roomLines(rooms)...)
	retention := a.core.Retention()
	db, timeout := a.opt.Store, a.opt.DBTimeout
	type size struct {
		msgs, bytes int64
		err         error
	}
	later(a, func() size {
		if db == nil {
			return size{err: fmt.Errorf("no archive configured")}
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
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
		field(x, "text-single", "version", "Version", fmt.Sprintf("xmppbouncer %s (%s)", a.opt.Version, runtime.Version()))
		field(x, "text-single", "uptime", "Up since", a.started.Format(stampFormat)+" ("+time.Since(a.started).Round(time.Second).String()+")")
		a.done(c, x)
	})
}

// statusUpstream adds the upstream connection's fields.
func (a *Commands) statusUpstream(x *stanza.Element) {
	up := a.core.Upstream()
	state := "offline"
	if up.Online {
		state = "connected as " + up.JID
	}
	field(x, "text-single", "upstream", "Upstream", state)
	st := up.Status
	if st == nil {
		return
	}
	if st.Connected {
		field(x, "text-single", "upstream-since", "Connected since", st.ConnectedSince.Format(stampFormat)+" ("+time.Since(st.ConnectedSince).Round(time.Second).String()+")")
	}
	field(x, "text-single", "upstream-server", "Server address", orNone(st.Server))
	field(x, "text-single", "upstream-sasl", "SASL mechanism", orNone(st.Mechanism))
	field(x, "text-single", "upstream-tls", "TLS", orNone(st.TLSVersion))
	field(x, "text-single", "upstream-reconnects", "Reconnects since start", fmt.Sprint(st.Reconnects))
	lastErr := "none"
	if st.LastError != "" {
		lastErr = st.LastError + " (" + st.LastErrorAt.Format(stampFormat) + ")"
	}
	field(x, "text-single", "upstream-last-error", "Last error", lastErr)
	field(x, "text-single", "upstream-traffic", "Traffic", humanBytes(int64(st.BytesIn))+" in, "+humanBytes(int64(st.BytesOut))+" out")
}

// clientLines describes each local client on one line.
func clientLines(clients []Client) []string {
	var out []string
	for _, s := range clients {
		out = append(out, clientLine(s))
	}
	if len(out) == 0 {
		out = []string{"none"}
	}
	return out
}

func clientLine(s Client) string {
	parts := []string{s.Resource}
	if s.HasConnInfo {
		parts = append(parts, "from "+s.Remote, "since "+s.Since.Format(stampFormat), orNone(s.TLSVersion), s.Mechanism)
	}
	parts = append(parts, userAgentParts(s)...)
	switch {
	case s.Available && s.Show != "":
		parts = append(parts, "available ("+s.Show+")")
	case s.Available:
		parts = append(parts, "available")
	case !s.AvailableSince.IsZero():
		parts = append(parts, "unavailable (was online since "+s.AvailableSince.Format(stampFormat)+")")
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
	if s.Rooms > 0 {
		parts = append(parts, "in "+plural(int64(s.Rooms), "room", "rooms"))
	}
	return strings.Join(parts, ", ")
}

// userAgentParts names a SASL2 client's software and device (XEP-0388
// <user-agent/>) for the clients list: "Conversations on Pixel 7".
func userAgentParts(s Client) []string {
	switch {
	case s.Software != "" && s.Device != "":
		return []string{s.Software + " on " + s.Device}
	case s.Software != "" || s.Device != "":
		return []string{s.Software + s.Device}
	}
	return nil
}

// smText is a client's XEP-0198 state: off, on (resumable or not) with
// what it has not acknowledged, or hibernated waiting for a resume.
func smText(s Client) string {
	if s.Hibernated {
		out := "SM hibernated"
		if !s.HibernatedAt.IsZero() {
			out += " since " + s.HibernatedAt.Format(stampFormat)
		}
		if s.SMKnown {
			out += ", " + plural(int64(s.SMUnacked), "stanza", "stanzas") + " waiting for the resume"
		}
		return out
	}
	if !s.SMKnown {
		return "SM unknown"
	}
	switch {
	case !s.SMOn:
		return "SM off"
	case s.SMResumable:
		return "SM on (resumable, " + strconv.Itoa(s.SMUnacked) + " unacked)"
	default:
		return "SM on (no resumption, " + strconv.Itoa(s.SMUnacked) + " unacked)"
	}
}

// roomLines describes each room on one line.
func (a *Commands) roomLines(rooms []Room) []string {
	var out []string
	for _, r := range rooms {
		out = append(out, a.roomLine(r))
	}
	if len(out) == 0 {
		out = []string{"none"}
	}
	return out
}

func (a *Commands) roomLine(r Room) string {
	parts := []string{r.JID + " as " + r.Nick, r.State, plural(int64(r.Occupants), "occupant", "occupants")}
	if r.Kept {
		parts = append(parts, "kept ("+a.keptBy(r)+")")
	}
	if len(r.Claimants) > 0 {
		parts = append(parts, "claimed by "+strings.Join(r.Claimants, ", "))
	} else {
		parts = append(parts, "no local client in it")
	}
	return strings.Join(parts, ", ")
}

// ClientsNobody is the clients form's choice to disconnect nobody. It is
// not empty (an empty option value crashes Profanity) and, in brackets,
// not a resource anyone picks.
const ClientsNobody = "(nobody)"

// clients lists the local clients and disconnects the one chosen.
func (a *Commands) clients(c *call) {
	clients := a.core.Clients()
	if c.form == nil {
		x := dataForm("form", "Local clients", "Choose a client to disconnect, or nobody to only look.")
		fixedLines(x, "client", clientLines(clients))
		f := field(x, "list-single", "disconnect", "Disconnect", ClientsNobody)
		option(f, "Nobody (only look)", ClientsNobody)
		for _, s := range clients {
			if s.Resource != ClientsNobody {
				option(f, s.Resource, s.Resource)
			}
		}
		a.askForm(c, x)
		return
	}
	res := c.value("disconnect")
	if res == "" || res == ClientsNobody {
		a.done(c, nil, info("Nobody disconnected."))
		return
	}
	var target *Client
	for i := range clients {
		if clients[i].Resource == res {
			target = &clients[i] // the newest, as resources are bound
		}
	}
	if target == nil {
		a.done(c, nil, fault("No client is connected on resource "+res+"."))
		return
	}
	a.opt.Log.Info("disconnecting a client on request", "jid", target.JID, "by", c.from.JID)
	// Answer first: the client may be the one asking.
	a.done(c, nil, info("Disconnected "+res+"."))
	a.core.Disconnect(target.ID, &stanza.StreamError{Condition: "policy-violation", Text: "disconnected by " + c.from.Resource + " with the bouncer's clients command"})
}

// reconnect drops the upstream session and connects again, once the user
// has confirmed it in a form: every room sees the account leave and come
// back, so one stray Enter in a command list must not do it.
func (a *Commands) reconnect(c *call) {
	if !a.core.Upstream().CanReconnect {
		a.done(c, nil, fault("This upstream cannot reconnect on request."))
		return
	}
	if !c.continued {
		x := dataForm("form", "Reconnect upstream", "Drop the upstream session and connect again. Local clients stay connected, but every room sees the account leave and join again.")
		required(field(x, "boolean", "confirm", "Yes, reconnect now", "0"))
		a.askForm(c, x)
		return
	}
	if !boolValue(c.value("confirm")) {
		a.done(c, nil, info("Not reconnected: the confirmation was not ticked."))
		return
	}
	a.opt.Log.Info("upstream reconnect requested", "by", c.from.JID)
	a.core.Reconnect()
	a.done(c, nil, info("Reconnecting upstream; local clients stay connected. Run status to see it back."))
}
