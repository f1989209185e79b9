package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	adhoc "mellium.im/xmpp/commands"
	"mellium.im/xmpp/jid"

	"xmppbouncer/config"
)

// keptRoom is a room the rooms command keeps: like a [[rooms]] entry with
// autojoin, stored under StateKeptRooms so it survives restarts.
type keptRoom struct {
	JID      string `json:"jid"`
	Nick     string `json:"nick"`
	Password string `json:"password,omitempty"`
}

// Start loads the rooms the rooms command keeps and the retention it set,
// off the loop, and applies them on it. The core calls it once its loop
// runs.
func (a *Commands) Start() {
	db := a.opt.Store
	if db == nil {
		return
	}
	type loaded struct {
		kept      []keptRoom
		retention string
		err       error
	}
	later(a, func() loaded {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var l loaded
		v, ok, err := db.GetState(ctx, StateKeptRooms)
		if err != nil {
			return loaded{err: err}
		}
		if ok {
			if err := json.Unmarshal([]byte(v), &l.kept); err != nil {
				return loaded{err: fmt.Errorf("%s: %w", StateKeptRooms, err)}
			}
		}
		l.retention, _, l.err = db.GetState(ctx, StateRetention)
		return l
	}, func(l loaded) {
		if l.err != nil {
			a.opt.Log.Error("could not load the rooms kept by the rooms command", "err", l.err)
			return
		}
		if l.retention != "" {
			if d, err := config.ParseRetention(l.retention); err == nil {
				a.core.SetRetention(d, false)
			}
		}
		a.kept = append(l.kept, a.kept...)
		for _, k := range l.kept {
			a.core.KeepRoom(k.JID, k.Nick, k.Password)
		}
	})
}

// saveKept writes the kept-room list off the loop and then calls done on
// the loop.
func (a *Commands) saveKept(done func(error)) {
	db := a.opt.Store
	if db == nil {
		done(fmt.Errorf("no archive database to keep the list in"))
		return
	}
	a.keptSeq++
	seq := a.keptSeq
	data, err := json.Marshal(a.kept)
	if err != nil {
		done(err)
		return
	}
	w, timeout := &a.keptWriter, a.opt.DBTimeout
	later(a, func() error {
		w.mu.Lock()
		defer w.mu.Unlock()
		if seq <= w.written {
			return nil // a newer list is on disk already
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		if err := db.SetState(ctx, StateKeptRooms, string(data)); err != nil {
			return err
		}
		w.written = seq
		return nil
	}, done)
}

func (a *Commands) keptIndex(room string) int {
	return slices.IndexFunc(a.kept, func(k keptRoom) bool { return k.JID == room })
}

// keptBy says why a kept room is kept.
func (a *Commands) keptBy(r Room) string {
	switch {
	case r.Configured:
		return "config"
	case a.keptIndex(r.JID) >= 0:
		return "rooms command"
	default:
		return "bookmark with autojoin"
	}
}

// rooms lists the rooms and joins, keeps, stops keeping or leaves one.
func (a *Commands) rooms(c *call) {
	if c.form == nil {
		x := dataForm("form", "Rooms", "Join a room, keep one (stay in it with no client, across restarts; stored in the bouncer's database), stop keeping one, or leave one (every local client leaves it too).")
		fixedLines(x, "room", a.roomLines(a.core.Rooms()))
		f := required(field(x, "list-single", "action", "Action", "keep"))
		option(f, "Join (until the next restart)", "join")
		option(f, "Keep (join and stay, across restarts)", "keep")
		option(f, "Stop keeping (leave once no client is in it)", "unkeep")
		option(f, "Leave now", "leave")
		required(field(x, "jid-single", "room", "Room address"))
		field(x, "text-single", "nick", "Nickname (join, keep)", a.opt.DefaultNick)
		field(x, "text-private", "password", "Room password, if any (join, keep)")
		a.askForm(c, x)
		return
	}
	room := normJID(c.value("room"))
	rj, err := jid.Parse(room)
	if room == "" || err != nil || rj.Localpart() == "" || rj.Resourcepart() != "" {
		a.done(c, nil, fault(fmt.Sprintf("%q is not a room address like room@conference.example.org.", c.value("room"))))
		return
	}
	nick := c.value("nick")
	if nick == "" {
		nick = a.opt.DefaultNick
	}
	password := c.value("password")
	switch c.value("action") {
	case "join":
		if already, as := a.core.JoinRoom(room, nick, password); already {
			a.done(c, nil, info("Already in "+room+" as "+as+"."))
			return
		}
		note := "Joining " + room + " as " + nick + "; run status to see it joined."
		if !a.core.Upstream().Online {
			note = "Upstream is offline: " + room + " is joined when it is back only if a client is in it; use keep to be sure."
		}
		a.done(c, nil, info(note))
	case "keep":
		k := keptRoom{JID: room, Nick: nick, Password: password}
		if r, ok := a.core.Room(room); ok && !r.Idle {
			k.Nick = r.Nick // the nick it has; a rename is the clients' business
		}
		if i := a.keptIndex(room); i >= 0 {
			a.kept[i] = k
		} else {
			a.kept = append(a.kept, k)
		}
		a.core.KeepRoom(k.JID, k.Nick, k.Password)
		a.saveKept(func(err error) {
			if err != nil {
				a.done(c, nil, fault("Kept "+room+" for now, but could not store it: "+err.Error()))
				return
			}
			a.done(c, nil, info("Keeping "+room+" as "+k.Nick+", also after a restart."))
		})
	case "unkeep", "leave":
		a.unkeep(c, room, c.value("action") == "leave")
	default:
		a.done(c, nil, fault("Choose an action: join, keep, unkeep or leave."))
	}
}

// unkeep stops keeping a room and, for leave, takes every local client out
// of it and the account with them.
func (a *Commands) unkeep(c *call, room string, leave bool) {
	r, found := a.core.Room(room)
	if r.Configured {
		a.done(c, nil, fault(room+" is kept by [[rooms]] in the config file; remove it there and restart."))
		return
	}
	var notes []adhoc.Note
	if found && r.Kept && a.keptBy(r) == "bookmark with autojoin" {
		notes = append(notes, warn(room+" is bookmarked with autojoin: the bouncer joins it again on the next reconnect unless you turn autojoin off in your client."))
	}
	if found {
		a.core.ReleaseRoom(room, leave)
	}
	finish := func() {
		now, _ := a.core.Room(room)
		switch {
		case !found:
			notes = append(notes, info("The bouncer is not in "+room+"; it is not kept."))
		case leave:
			notes = append(notes, info("Left "+room+"."))
		case len(now.Claimants) > 0:
			notes = append(notes, info("No longer keeping "+room+"; the bouncer leaves it when the last local client does."))
		default:
			notes = append(notes, info("No longer keeping "+room+"; left it."))
		}
		a.done(c, nil, notes...)
	}
	i := a.keptIndex(room)
	if i < 0 {
		finish()
		return
	}
	a.kept = slices.Delete(a.kept, i, i+1)
	a.saveKept(func(err error) {
		if err != nil {
			notes = append(notes, fault("Could not store the change: "+err.Error()))
		}
		finish()
	})
}

// normJID normalises a JID a client wrote; it returns "" for an invalid one.
func normJID(s string) string {
	if s == "" {
		return ""
	}
	j, err := jid.Parse(s)
	if err != nil {
		return ""
	}
	return j.String()
}
