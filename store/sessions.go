package store

import "time"

// UpstreamSM is the persisted XEP-0198 state of the upstream session.
type UpstreamSM struct {
	ID    string // resumption id (<enabled id/>)
	Bound string // the full JID the session is bound to
	H     uint32 // stanzas from the server durably handled
}

// Resumable is a local client's persisted XEP-0198 session.
type Resumable struct {
	ID       string
	Resource string
	InH      uint32
	Expires  time.Time
	Presence string // the client's presence (XML), "" if none
	Rooms    string // "room nick" lines
}

// FastToken is one stored XEP-0484 FAST token: its hash, never the token.
type FastToken struct {
	Hash      []byte
	UserAgent string
	Software  string
	Device    string
	Mechanism string
	Created   time.Time
	Expires   time.Time
	LastUsed  time.Time // zero: never used
	Count     uint64
}
