package main

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"xmppbouncer/stanza"
	"xmppbouncer/upstream"
	"xmppbouncer/wire"
)

// bodyPrefix starts every flood message's body: "xbload SEQ UNIXNANO pad".
const bodyPrefix = "xbload "

// session is one logged-in XMPP connection of the load tool: a receiver
// in the room (through the bouncer or directly) or the flooder.
type session struct {
	name string // for messages: "bouncer#3", "direct#0", "flooder"
	conn conn
	jid  jid.JID
	room string

	joinOnce sync.Once
	joined   chan struct{} // closed on the room's subject after self-presence
	joinErr  chan string   // a presence error from the room

	mu      sync.Mutex
	selfIn  bool     // the self-presence (status 110) arrived
	counts  []uint16 // per sequence number: live copies received
	firstAt []int64  // per sequence number: unix ns of the first live copy
	lat     []int64  // ns, one per live copy received
	last    time.Time
	unique  int // sequence numbers received live at least once
	delayed int // flood messages received as delayed history (ignored)
	other   int // flood messages that did not parse
}

type dialOpts struct {
	addr, account, password, resource string
	queue                             int
}

func dial(ctx context.Context, o dialOpts, name, room string) (*session, error) {
	j, err := jid.Parse(o.account)
	if err != nil {
		return nil, err
	}
	cfg := upstream.Config{
		JID:                j.Bare(),
		Password:           o.password,
		Address:            o.addr,
		TLS:                upstream.TLSStartTLS,
		InsecureSkipVerify: true, // loopback, throwaway certificates
		Resource:           o.resource,
		Logger:             slog.New(slog.DiscardHandler),
	}
	dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	conn, bound, err := upstream.Dial(dctx, cfg, wire.Options{QueueLen: o.queue})
	if err != nil {
		return nil, fmt.Errorf("%s: log in as %s/%s at %s: %w", name, o.account, o.resource, o.addr, err)
	}
	s := &session{name: name, conn: conn, jid: bound, room: room,
		joined: make(chan struct{}), joinErr: make(chan string, 1)}
	go func() { _ = conn.Read(s.handle) }()
	return s, nil
}

func (s *session) handle(el *stanza.Element) {
	now := time.Now()
	from := el.From()
	bare, _, _ := strings.Cut(from, "/")
	if bare != s.room {
		return
	}
	switch el.Kind() {
	case "presence":
		if el.Type() == "error" {
			select {
			case s.joinErr <- el.String():
			default:
			}
			return
		}
		if x := el.Child(stanza.NSMUCUser, "x"); x != nil {
			for _, st := range x.ChildrenNamed(stanza.NSMUCUser, "status") {
				if st.Get("code") == "110" {
					s.mu.Lock()
					s.selfIn = true
					s.mu.Unlock()
				}
			}
		}
	case "message":
		if el.Type() != "groupchat" {
			return
		}
		body := el.Child(stanza.NSClient, "body")
		if body == nil {
			if el.Child(stanza.NSClient, "subject") != nil {
				s.mu.Lock()
				self := s.selfIn
				s.mu.Unlock()
				if self {
					s.joinOnce.Do(func() { close(s.joined) })
				}
			}
			return
		}
		text := body.Text()
		if !strings.HasPrefix(text, bodyPrefix) {
			return
		}
		seq, ts, ok := parseBody(text)
		s.mu.Lock()
		defer s.mu.Unlock()
		switch {
		case el.Child(stanza.NSDelay, "delay") != nil:
			s.delayed++
		case !ok:
			s.other++
		default:
			for uint64(len(s.counts)) <= seq {
				grow := max(1024, len(s.counts))
				s.counts = append(s.counts, make([]uint16, grow)...)
				s.firstAt = append(s.firstAt, make([]int64, grow)...)
			}
			if s.counts[seq] == 0 {
				s.unique++
				s.firstAt[seq] = now.UnixNano()
			}
			s.counts[seq]++
			s.lat = append(s.lat, now.UnixNano()-ts)
			s.last = now
		}
	}
}

func parseBody(text string) (seq uint64, ts int64, ok bool) {
	rest := text[len(bodyPrefix):]
	a, rest, ok1 := strings.Cut(rest, " ")
	b, _, _ := strings.Cut(rest, " ")
	if !ok1 {
		return 0, 0, false
	}
	seq, err1 := strconv.ParseUint(a, 10, 64)
	ts, err2 := strconv.ParseInt(b, 10, 64)
	return seq, ts, err1 == nil && err2 == nil
}

// floodMessage builds message seq for room, its body padded to size bytes.
func floodMessage(room string, seq uint64, size int) *stanza.Element {
	body := bodyPrefix + strconv.FormatUint(seq, 10) + " " + strconv.FormatInt(time.Now().UnixNano(), 10) + " "
	if pad := size - len(body); pad > 0 {
		body += strings.Repeat("x", pad)
	}
	return stanza.New(stanza.NSClient, "message", "to", room, "type", "groupchat", "id", "ld-"+strconv.FormatUint(seq, 10)).
		Append(stanza.New(stanza.NSClient, "body").AppendText(body))
}

func (s *session) send(el *stanza.Element) error {
	if !s.conn.Send(el) {
		return fmt.Errorf("%s: cannot send (queue full or closed: %v)", s.name, s.conn.Err())
	}
	return nil
}

// join sends initial presence and joins the room as nick, waiting for the
// self-presence and the subject.
func (s *session) join(ctx context.Context, nick string, timeout time.Duration) error {
	if err := s.send(stanza.New(stanza.NSClient, "presence")); err != nil {
		return err
	}
	p := stanza.New(stanza.NSClient, "presence", "to", s.room+"/"+nick).
		Append(stanza.New(stanza.NSMUC, "x").Append(stanza.New(stanza.NSMUC, "history", "maxstanzas", "0")))
	if err := s.send(p); err != nil {
		return err
	}
	select {
	case <-s.joined:
		return nil
	case e := <-s.joinErr:
		return fmt.Errorf("%s: joining %s failed: %s", s.name, s.room, e)
	case <-s.conn.Done():
		return fmt.Errorf("%s: the stream ended while joining %s: %v", s.name, s.room, s.conn.Err())
	case <-time.After(timeout):
		return fmt.Errorf("%s: no self-presence and subject from %s within %v", s.name, s.room, timeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *session) closed() bool {
	select {
	case <-s.conn.Done():
		return true
	default:
		return false
	}
}

func (s *session) close() {
	s.conn.Close(nil)
	select {
	case <-s.conn.Done():
	case <-time.After(3 * time.Second):
	}
}

// received returns how many distinct flood messages arrived live.
func (s *session) received() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unique
}
