package bouncer

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"xmppbouncer/stanza"
)

// Stanza directions counted in Stats.
const (
	FromClients = iota
	ToClients
	FromUpstream
	ToUpstream
	numDirections
)

// DirectionNames are the metric label values of the directions.
var DirectionNames = [numDirections]string{"from_clients", "to_clients", "from_upstream", "to_upstream"}

// Stanza kinds counted in Stats.
var KindNames = [...]string{"message", "presence", "iq", "other"}

// Stats are the bouncer's counters. They are atomics, so metrics read them
// from any goroutine without asking the loop.
type Stats struct {
	stanzas         [numDirections][len(KindNames)]atomic.Uint64
	slowDisconnects atomic.Uint64
}

func kindIndex(el *stanza.Element) int {
	switch el.Name.Local {
	case "message":
		return 0
	case "presence":
		return 1
	case "iq":
		return 2
	}
	return 3
}

func (s *Stats) count(dir int, el *stanza.Element) {
	s.stanzas[dir][kindIndex(el)].Add(1)
}

// Stanzas is how many stanzas of kind (an index into KindNames) went in
// direction dir since start.
func (s *Stats) Stanzas(dir, kind int) uint64 { return s.stanzas[dir][kind].Load() }

// SlowDisconnects is how many local clients were cut off because their
// output queue overflowed.
func (s *Stats) SlowDisconnects() uint64 { return s.slowDisconnects.Load() }

// slowDisconnect counts a client cut off for being too slow.
func (s *Stats) slowDisconnect() { s.slowDisconnects.Add(1) }

// Stats returns the bouncer's counters.
func (b *Bouncer) Stats() *Stats { return b.stats }

// Observer is told how long the loop took for each event (a burst of
// upstream stanzas counts as one).
type Observer interface {
	LoopEvent(d time.Duration)
}

// SetObserver installs o; call it before Run.
func (b *Bouncer) SetObserver(o Observer) { b.observer.Store(&o) }

func (b *Bouncer) observeLoop(start time.Time) {
	if o := b.observer.Load(); o != nil {
		(*o).LoopEvent(time.Since(start))
	}
}

// QueueDepth is how many events wait for the loop.
func (b *Bouncer) QueueDepth() int { return len(b.events) }

// Retention is the archive retention in force (0: forever).
func (b *Bouncer) Retention() time.Duration { return b.retention.get() }

// Snapshot is the loop state metrics show, read on the loop.
type Snapshot struct {
	Online       bool
	Clients      map[ClientState]int
	RoomsJoined  int // the account is in the room upstream
	RoomsClaimed int // at least one local client is in it
	RoomsKept    int
	Outbox       int // messages queued while upstream is down
}

// ClientState is a local client's stream management and CSI state.
type ClientState struct {
	SM  string // "live" or "hibernated" (XEP-0198)
	CSI string // "active" or "inactive" (XEP-0352)
}

// ErrLoopBusy is returned when the loop does not answer in time.
var ErrLoopBusy = errors.New("bouncer: the event loop did not answer in time")

// Snapshot reads the loop state on the loop, waiting at most until ctx is
// done. A scrape must not pile up behind a stuck loop, so it gives up.
func (b *Bouncer) Snapshot(ctx context.Context) (Snapshot, error) {
	out := make(chan Snapshot, 1)
	f := funcEvent{f: func() { out <- b.snapshot() }}
	select {
	case b.events <- f:
	case <-ctx.Done():
		return Snapshot{}, ErrLoopBusy
	}
	select {
	case s := <-out:
		return s, nil
	case <-ctx.Done():
		return Snapshot{}, ErrLoopBusy
	}
}

func (b *Bouncer) snapshot() Snapshot {
	s := Snapshot{Online: b.upl.online(), Clients: map[ClientState]int{}, Outbox: b.ob.chatsWaiting()}
	for _, c := range b.reg.All() {
		st := ClientState{SM: "live", CSI: "active"}
		if c.Hibernated {
			st.SM = "hibernated"
		}
		if c.Inactive {
			st.CSI = "inactive"
		}
		s.Clients[st]++
	}
	s.RoomsJoined, s.RoomsClaimed, s.RoomsKept = b.muc.counts()
	return s
}
