// Package admin holds the XEP-0050 commands the bouncer answers itself, so
// that a user can look after it from the client they already have open:
// the command set, their forms and texts, and the multi-step command
// sessions. It reaches the bouncer's core only through Core, a handful of
// snapshot queries and actions that the core runs on its loop; it never
// touches the core's state.
//
// Every method of Commands runs on the core's loop goroutine. Work that
// waits on disk runs in a goroutine of its own and comes back through
// Core.Post.
//
// Files: core.go (what the core offers), commands.go (dispatch, sessions,
// replies), forms.go (XEP-0004 builders and texts), status.go (status,
// clients, reconnect), rooms.go (rooms and the kept-room list),
// history.go (retention, prune, export), fast.go (FAST tokens).
package admin

import (
	"context"
	"time"

	"xmppbouncer/stanza"
	"xmppbouncer/store"
	"xmppbouncer/upstream"
)

// Core is what the bouncer's core offers the commands. Every method is
// called on the core's loop, except Post, which any goroutine may call.
type Core interface {
	// Send sends el to the local client with this session id and reports
	// whether that client is still connected.
	Send(client uint64, el *stanza.Element) bool
	// SendUp sends el to the upstream server.
	SendUp(el *stanza.Element)
	// AskUpstream sends the IQ iq upstream and calls answer on the loop
	// with the server's answer, or nil when none comes in time. It
	// reports false when upstream is down.
	AskUpstream(iq *stanza.Element, answer func(*stanza.Element)) bool
	// Post runs f on the loop, unless the loop has stopped.
	Post(f func())

	// Upstream, Clients, Rooms and Room are snapshots of the core's
	// state.
	Upstream() Upstream
	Clients() []Client
	Rooms() []Room // sorted by JID
	Room(jid string) (Room, bool)
	// Retention is the archive retention in force (0: forever).
	Retention() time.Duration

	// Disconnect closes a local client's stream with e.
	Disconnect(client uint64, e *stanza.StreamError)
	// Reconnect drops the upstream session and connects again; false when
	// this upstream cannot.
	Reconnect() bool
	// JoinRoom joins room upstream until the next restart; nick and
	// password replace the room's. It reports the nick it was in when it
	// was already in.
	JoinRoom(room, nick, password string) (already bool, inAs string)
	// KeepRoom marks room kept and joins it when it is not in it; nick and
	// password are used for a room the core did not know.
	KeepRoom(room, nick, password string)
	// ReleaseRoom stops keeping room and leaves it once no local client is
	// in it; with leave, every local client is taken out of it first.
	ReleaseRoom(room string, leave bool)
	// SetRetention puts d in force; with prune, the pruner runs now.
	SetRetention(d time.Duration, prune bool)
}

// Upstream is the upstream session's state.
type Upstream struct {
	Online       bool
	JID          string           // the bound full JID
	Status       *upstream.Status // nil when the upstream does not tell
	CanReconnect bool
}

// Client is one local client's state.
type Client struct {
	ID       uint64
	JID      string
	Resource string

	HasConnInfo               bool // the next four are known
	Remote                    string
	Since                     time.Time
	TLSVersion, Mechanism     string
	Software, Device, AgentID string // XEP-0388 <user-agent/>

	Available      bool
	Show           string
	AvailableSince time.Time
	Inactive       bool // XEP-0352

	Hibernated   bool // XEP-0198
	HibernatedAt time.Time
	SMKnown      bool // the next three are known
	SMOn         bool
	SMResumable  bool
	SMUnacked    int

	Rooms int // rooms it is in
}

// Room is one room's state.
type Room struct {
	JID, Nick  string
	State      string // "not joined", "joining", "syncing", "joined", "leaving"
	Idle       bool   // not joined upstream, nor on its way
	Leaving    bool
	Occupants  int      // the account included
	Kept       bool     // the bouncer stays in it without clients
	Configured bool     // kept by [[rooms]] in the config file
	Claimants  []string // resources of the local clients in it
}

// Store is what the commands need from the database (sqlite.DB has it).
type Store interface {
	GetState(ctx context.Context, key string) (string, bool, error)
	SetState(ctx context.Context, key, value string) error
	Query(ctx context.Context, q store.Query) (*store.Page, error)
	Prune(ctx context.Context, olderThan time.Time) (int64, error)
	Size(ctx context.Context) (messages, bytes int64, err error)
}

// FastStore is what the FAST tokens command needs from the database.
type FastStore interface {
	FastTokens(ctx context.Context, userAgent string) ([]store.FastToken, error)
	DeleteFastTokens(ctx context.Context, userAgent string) (int64, error)
}

// State keys of the commands' settings in Store.
const (
	StateKeptRooms = "admin.kept_rooms"
	StateRetention = "admin.history.retention"
)
