package bouncer

import (
	"context"
	"time"

	"xmppbouncer/store"
)

// Catch-up cursors: where each resource stands in each room (and in the
// account's chats, chatCursor), moved by the marks of what its connection
// delivered (client.resolve), saved off the loop, and read back at start.

// cursorKey names one resource's cursor in one room.
type cursorKey struct{ room, resource string }

// cursorPos is a cursor: the seq, and when it last moved.
type cursorPos struct {
	seq int64
	at  time.Time
}

// uncommittedMark is a delivered room message whose commit is pending.
type uncommittedMark struct {
	key cursorKey
	pm  *pendingMsg
}

// cursorExpiry is how long a cursor that does not move is kept. A
// generated resource is new on every login, so its cursors would pile up
// for ever; a fixed one that stays away this long gets default_replay.
const cursorExpiry = 90 * 24 * time.Hour

// delivery owns the catch-up cursors (the offline store feed is
// offline.go's). It runs on the loop goroutine.
type delivery struct {
	b       *Bouncer
	cursors map[cursorKey]cursorPos // loaded at start, moved by resolved marks
	dirty   map[cursorKey]cursorPos // moved since last saved
	// uncommitted are delivered room messages still waiting for their
	// commit; they move their cursor once it lands (resolveUncommitted).
	uncommitted []uncommittedMark
}

func newDelivery(b *Bouncer) *delivery {
	return &delivery{b: b, cursors: map[cursorKey]cursorPos{}, dirty: map[cursorKey]cursorPos{}}
}

// delivered applies the marks of what resource's connection has
// delivered, in order: cursors move, offline rows are deleted.
func (d *delivery) delivered(resource string, ms []mark) {
	var offline int64
	chatMoved := false
	for _, m := range ms {
		k := cursorKey{m.room, resource}
		if m.pm != nil {
			// Forwarded before its commit: its seq is known once that
			// lands. Cursors only move forward, so it can wait apart.
			d.uncommitted = append(d.uncommitted, uncommittedMark{k, m.pm})
			continue
		}
		d.moveCursor(k, m.seq)
		offline = max(offline, m.offline)
		chatMoved = chatMoved || m.room == chatCursor
	}
	if chatMoved {
		// Saved at once: after a crash a client gets what is behind it.
		d.saveCursors()
	}
	d.b.offline.delivered(offline) // offline.go
}

func (d *delivery) moveCursor(k cursorKey, seq int64) {
	if seq > d.cursors[k].seq {
		p := cursorPos{seq: seq, at: time.Now()}
		d.cursors[k] = p
		d.dirty[k] = p
	}
}

// pruneCursors forgets the cursors that have not moved for cursorExpiry,
// here and in the database.
func (d *delivery) pruneCursors(now time.Time) {
	cut := now.Add(-cursorExpiry)
	for k, p := range d.cursors {
		if p.at.Before(cut) {
			delete(d.cursors, k)
		}
	}
	d.b.background(func(ctx context.Context, db Store) error {
		_, err := db.PruneCursors(ctx, cut)
		return err
	})
}

// resolveUncommitted moves the cursors of delivered messages whose commit
// has landed since.
func (d *delivery) resolveUncommitted() {
	keep := d.uncommitted[:0]
	for _, u := range d.uncommitted {
		if !u.pm.done {
			keep = append(keep, u)
			continue
		}
		d.moveCursor(u.key, u.pm.m.Seq)
	}
	clear(d.uncommitted[len(keep):])
	d.uncommitted = keep
}

// sessionEnded saves what the session id's delivery moved and stops
// feeding it the offline store.
func (d *delivery) sessionEnded(id uint64) {
	d.b.offline.ended(id) // offline.go
	d.saveCursors()
}

// cursor is where resource stands in room: the seq of the newest archived
// message delivered to it, and whether it has ever received one.
func (d *delivery) cursor(room, resource string) (int64, bool) {
	p, ok := d.cursors[cursorKey{room, resource}]
	return p.seq, ok
}

// minCursor is the lowest cursor any resource has in room (-1: none).
func (d *delivery) minCursor(room string) int64 {
	var min int64 = -1
	for k, p := range d.cursors {
		if k.room == room && (min < 0 || p.seq < min) {
			min = p.seq
		}
	}
	return min
}

// loadCursors reads the stored cursors at start.
func (d *delivery) loadCursors() {
	if d.b.opt.Archive == nil {
		return
	}
	ctx, cancel := d.b.dbCtx()
	defer cancel()
	cs, err := d.b.opt.Archive.Cursors(ctx)
	if err != nil {
		d.b.log.Error("reading catch-up cursors", "err", err)
		return
	}
	for _, c := range cs {
		d.cursors[cursorKey{c.Room, c.Resource}] = cursorPos{seq: c.Seq, at: c.Updated}
	}
}

// saveCursors stores the cursors that moved, off the loop. Saves only move
// cursors forward, so two in flight cannot undo each other.
func (d *delivery) saveCursors() {
	if d.b.arch == nil || len(d.dirty) == 0 {
		return
	}
	cs := make([]store.Cursor, 0, len(d.dirty))
	for k, p := range d.dirty {
		cs = append(cs, store.Cursor{Room: k.room, Resource: k.resource, Seq: p.seq, Updated: p.at})
	}
	clear(d.dirty)
	d.b.background(func(ctx context.Context, db Store) error {
		return db.SaveCursors(ctx, cs)
	})
}

// sweepDelivery runs with the IQ sweep: marks of idle clients resolve and
// moved cursors are saved.
func (d *delivery) sweepDelivery() {
	d.resolveUncommitted()
	d.b.clients.resolveAll()
	d.saveCursors()
}
