package store

import "time"

// Offline is one stored offline message (XEP-0160).
type Offline struct {
	Seq   int64
	Stamp time.Time
	XML   string
}

// Cursor is where one local resource stands in one room's archive.
type Cursor struct {
	Room, Resource string
	Seq            int64
	Updated        time.Time // when it last moved (whole seconds)
}

// Chat is one message in the durable chat queue.
type Chat struct {
	Seq      int64
	SID      string // server stanza-id, "" if none
	Stamp    time.Time
	Rcpt     []string // the local resources it is for
	XML      string
	Inserted bool // set by StoreChats: false for a stanza-id already queued
}

// PushRegistration is one client's XEP-0357 registration: where the
// bouncer publishes a notification when that client is away.
type PushRegistration struct {
	Resource string // the local client's resource
	Service  string // the app server's JID (the enable element's jid)
	Node     string // the node on that app server
	Form     string // the client's publish-options <x xmlns='jabber:x:data'/>, "" if none
	Created  time.Time
}
