package bouncer

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"xmppbouncer/config"
	"xmppbouncer/stanza"
)

// keptRoom is a room the rooms command keeps: like a [[rooms]] entry with
// autojoin, stored in SQLite under stateKeptRooms so it survives restarts.
type keptRoom struct {
	JID      string `json:"jid"`
	Nick     string `json:"nick"`
	Password string `json:"password,omitempty"`
}

// State keys of the admin commands.
const (
	stateKeptRooms = "admin.kept_rooms"
	stateRetention = "admin.history.retention"
)

// keptWriter serialises the writes of the kept-room list so that an older
// list never overwrites a newer one. It guards disk writes only, never
// bouncer state.
type keptWriter struct {
	mu      sync.Mutex
	written uint64
}

// adminStartup loads the rooms the rooms command keeps and the retention
// it set, off the loop, and applies them on it.
func (b *Bouncer) adminStartup() {
	db := b.opt.Archive
	if db == nil {
		return
	}
	type loaded struct {
		kept      []keptRoom
		retention string
		err       error
	}
	later(b, func() loaded {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var l loaded
		v, ok, err := db.GetState(ctx, stateKeptRooms)
		if err != nil {
			return loaded{err: err}
		}
		if ok {
			if err := json.Unmarshal([]byte(v), &l.kept); err != nil {
				return loaded{err: fmt.Errorf("%s: %w", stateKeptRooms, err)}
			}
		}
		l.retention, _, l.err = db.GetState(ctx, stateRetention)
		return l
	}, func(l loaded) {
		if l.err != nil {
			b.log.Error("could not load the rooms kept by the rooms command", "err", l.err)
			return
		}
		if l.retention != "" {
			if d, err := config.ParseRetention(l.retention); err == nil {
				b.admin.retention.Store(int64(d))
			}
		}
		b.admin.kept = append(l.kept, b.admin.kept...)
		for _, k := range l.kept {
			b.keepRoom(k)
		}
	})
}

// keepRoom makes a room kept and joins it when it is not in it.
func (b *Bouncer) keepRoom(k keptRoom) *Room {
	r := b.rooms[k.JID]
	if r == nil {
		r = newRoom(k.JID)
		r.Nick, r.Password = k.Nick, k.Password
		b.rooms[k.JID] = r
	}
	r.Kept = true
	if r.State == roomIdle {
		b.joinUpstream(r)
	}
	return r
}

// saveKept writes the kept-room list off the loop and then calls done on
// the loop.
func (b *Bouncer) saveKept(done func(error)) {
	db := b.opt.Archive
	if db == nil {
		done(fmt.Errorf("no archive database to keep the list in"))
		return
	}
	b.admin.keptSeq++
	seq := b.admin.keptSeq
	data, err := json.Marshal(b.admin.kept)
	if err != nil {
		done(err)
		return
	}
	w := &b.admin.keptWriter
	later(b, func() error {
		w.mu.Lock()
		defer w.mu.Unlock()
		if seq <= w.written {
			return nil // a newer list is on disk already
		}
		ctx, cancel := context.WithTimeout(context.Background(), b.opt.DBTimeout)
		defer cancel()
		if err := db.SetState(ctx, stateKeptRooms, string(data)); err != nil {
			return err
		}
		w.written = seq
		return nil
	}, done)
}

func (b *Bouncer) keptIndex(room string) int {
	return slices.IndexFunc(b.admin.kept, func(k keptRoom) bool { return k.JID == room })
}

// keptBy says why a kept room is kept.
func (b *Bouncer) keptBy(room string) string {
	switch {
	case b.configured(room):
		return "config"
	case b.keptIndex(room) >= 0:
		return "rooms command"
	default:
		return "bookmark with autojoin"
	}
}

// cmdRooms lists the rooms and joins, keeps, stops keeping or leaves one.
func (b *Bouncer) cmdRooms(c *adminCall) {
	if c.form == nil {
		x := dataForm("form", "Rooms", "Join a room, keep one (stay in it with no client, across restarts; stored in the bouncer's database), stop keeping one, or leave one (every local client leaves it too).")
		fixedLines(x, "room", b.roomLines())
		f := required(field(x, "list-single", "action", "Action", "keep"))
		option(f, "Join (until the next restart)", "join")
		option(f, "Keep (join and stay, across restarts)", "keep")
		option(f, "Stop keeping (leave once no client is in it)", "unkeep")
		option(f, "Leave now", "leave")
		required(field(x, "jid-single", "room", "Room address"))
		field(x, "text-single", "nick", "Nickname (join, keep)", b.opt.Account.Localpart())
		field(x, "text-private", "password", "Room password, if any (join, keep)")
		b.adminForm(c, x)
		return
	}
	room := normJID(c.value("room"))
	rj, err := jid.Parse(room)
	if room == "" || err != nil || rj.Localpart() == "" || rj.Resourcepart() != "" {
		b.adminDone(c, nil, fault(fmt.Sprintf("%q is not a room address like room@conference.example.org.", c.value("room"))))
		return
	}
	nick := c.value("nick")
	if nick == "" {
		nick = b.opt.Account.Localpart()
	}
	password := c.value("password")
	switch c.value("action") {
	case "join":
		r := b.rooms[room]
		if r != nil && r.State != roomIdle && r.State != roomLeaving {
			b.adminDone(c, nil, info("Already in "+room+" as "+r.Nick+"."))
			return
		}
		if r == nil {
			r = newRoom(room)
			b.rooms[room] = r
		}
		r.Nick, r.Password = nick, password
		b.joinUpstream(r)
		note := "Joining " + room + " as " + nick + "; run status to see it joined."
		if !b.online {
			note = "Upstream is offline: " + room + " is joined when it is back only if a client is in it; use keep to be sure."
		}
		b.adminDone(c, nil, info(note))
	case "keep":
		k := keptRoom{JID: room, Nick: nick, Password: password}
		if r := b.rooms[room]; r != nil && r.State != roomIdle {
			k.Nick = r.Nick // the nick it has; a rename is the clients' business
		}
		if i := b.keptIndex(room); i >= 0 {
			b.admin.kept[i] = k
		} else {
			b.admin.kept = append(b.admin.kept, k)
		}
		b.keepRoom(k)
		b.saveKept(func(err error) {
			if err != nil {
				b.adminDone(c, nil, fault("Kept "+room+" for now, but could not store it: "+err.Error()))
				return
			}
			b.adminDone(c, nil, info("Keeping "+room+" as "+k.Nick+", also after a restart."))
		})
	case "unkeep", "leave":
		b.unkeepRoom(c, room, c.value("action") == "leave")
	default:
		b.adminDone(c, nil, fault("Choose an action: join, keep, unkeep or leave."))
	}
}

// unkeepRoom stops keeping a room and, for leave, takes every local client
// out of it and the account with them.
func (b *Bouncer) unkeepRoom(c *adminCall, room string, leave bool) {
	if b.configured(room) {
		b.adminDone(c, nil, fault(room+" is kept by [[rooms]] in the config file; remove it there and restart."))
		return
	}
	r := b.rooms[room]
	var notes []adminNote
	if r != nil && r.Kept && b.keptBy(room) == "bookmark with autojoin" {
		notes = append(notes, warn(room+" is bookmarked with autojoin: the bouncer joins it again on the next reconnect unless you turn autojoin off in your client."))
	}
	if r != nil {
		r.Kept = false
		if leave {
			b.kickClaimants(r)
		}
		b.maybeLeaveUpstream(r)
	}
	finish := func() {
		switch {
		case r == nil:
			notes = append(notes, info("The bouncer is not in "+room+"; it is not kept."))
		case leave:
			notes = append(notes, info("Left "+room+"."))
		case len(b.reg.Claimants(room)) > 0:
			notes = append(notes, info("No longer keeping "+room+"; the bouncer leaves it when the last local client does."))
		default:
			notes = append(notes, info("No longer keeping "+room+"; left it."))
		}
		b.adminDone(c, nil, notes...)
	}
	i := b.keptIndex(room)
	if i < 0 {
		finish()
		return
	}
	b.admin.kept = slices.Delete(b.admin.kept, i, i+1)
	b.saveKept(func(err error) {
		if err != nil {
			notes = append(notes, fault("Could not store the change: "+err.Error()))
		}
		finish()
	})
}

// kickClaimants tells each local client in r that it is out (its own
// unavailable self-presence, XEP-0045 §7.14) and ends its claim.
func (b *Bouncer) kickClaimants(r *Room) {
	for _, s := range b.reg.ClearRoom(r.JID) {
		p := stanza.New(stanza.NSClient, "presence", "type", "unavailable", "from", r.JID+"/"+r.Nick, "to", s.JID.String())
		x := stanza.New(stanza.NSMUCUser, "x")
		x.Append(stanza.New(stanza.NSMUCUser, "item", "affiliation", affiliationOf(r.Self), "role", "none"))
		x.Append(stanza.New(stanza.NSMUCUser, "status", "code", "110"))
		b.sendTo(s, p.Append(x))
	}
	r.pending = nil
}
