package store

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// Message is one archived groupchat stanza.
type Message struct {
	Room     string    // room bare JID
	StanzaID string    // room-assigned stanza-id (XEP-0359, by=room), "" if none
	OriginID string    // XEP-0359 origin-id
	ID       string    // the message's id attribute
	Nick     string    // sender nick (resource of from)
	RealJID  string    // sender real bare JID when known
	Stamp    time.Time // server timestamp: delay stamp if present, else arrival
	Body     *string   // nil for non-body stanzas (reactions, retractions, markers, subject-only)
	XML      string    // the whole stanza as XML
	Seq      int64     // set by the archive: monotonic row id
	Inserted bool      // set by Append/AppendBatch: false for a duplicate
}

// syntheticPrefix starts the archive id of a message the room gave no
// stanza-id. Such ids are "xb-<seq>"; see ArchiveID.
const syntheticPrefix = "xb-"

// ArchiveID is the id clients see for m in MAM results and RSM (XEP-0313
// §5.1 result id): the room's stanza-id, or "xb-<seq>" when the room gave
// none. Query accepts both forms back.
func (m *Message) ArchiveID() string {
	if m.StanzaID != "" {
		return m.StanzaID
	}
	return syntheticPrefix + strconv.FormatInt(m.Seq, 10)
}

// SyntheticSeq reads back an archive id of the "xb-<seq>" form (see
// ArchiveID): the seq, and whether id has exactly that form. Such an id
// only names a message without a stanza-id; a room-assigned stanza-id that
// happens to look the same wins.
func SyntheticSeq(id string) (int64, bool) {
	rest, ok := strings.CutPrefix(id, syntheticPrefix)
	if !ok {
		return 0, false
	}
	seq, err := strconv.ParseInt(rest, 10, 64)
	if err != nil || seq <= 0 || strconv.FormatInt(seq, 10) != rest {
		return 0, false
	}
	return seq, true
}

// HistoryLimit is the <history/> element of a MUC join (XEP-0045 §7.2.14).
// -1 (or the zero time for Since) means the attribute was absent.
type HistoryLimit struct {
	MaxStanzas int       // -1 unset
	MaxChars   int       // -1 unset; counts len(XML) of each stanza, like Prosody
	Seconds    int       // -1 unset
	Since      time.Time // zero unset
}

// NoHistoryLimit is a HistoryLimit with nothing set.
var NoHistoryLimit = HistoryLimit{MaxStanzas: -1, MaxChars: -1, Seconds: -1}

// ErrItemNotFound is returned by Query when an id given in RSM after/before
// or in the after-id, before-id or ids form fields is not in the room's
// archive (XEP-0313 §4.1.3 and §4.2.2: the server MUST answer
// item-not-found).
var ErrItemNotFound = errors.New("store: archive id not found")

// Query is one MAM query (XEP-0313 v2 form fields plus RSM, XEP-0059) on a
// room archive. Ids are archive ids as returned by Message.ArchiveID.
type Query struct {
	Room              string
	Start, End        time.Time // zero = unset, inclusive
	With              string    // occupant JID room@host/nick (matches nick), or a real bare JID
	BeforeID, AfterID string    // XEP-0313 before-id/after-id form fields (exclusive)
	IDs               []string  // XEP-0313 ids form field
	FullText          string    // {urn:xmpp:fulltext:0}fulltext
	Max               int       // page size, capped by the caller; <= 0 returns only the count
	After             string    // RSM <after>
	Before            string    // RSM <before>
	BeforeSet         bool      // RSM <before> present ("" = last page); takes precedence over After
	Flip              bool      // XEP-0313 <flip-page/>: return the page in reverse order
}

// Page is one page of a Query result.
//
// Messages are in chronological order (reverse with Flip). First and Last
// are the archive ids of the chronologically first and last message of the
// page whatever Flip says, so that RSM paging (after=Last, before=First)
// works the same with flipped pages; both are "" on an empty page. Count is
// the number of messages matching the query's filters, ignoring RSM
// after/before. Complete is true when nothing more matches in the paging
// direction: after Last going forward, before First going backward (RSM
// <before>).
type Page struct {
	Messages    []*Message
	First, Last string
	Count       int
	Complete    bool
}
