package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"xmppbouncer/store"
)

func openTest(t testing.TB) (*DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "archive.db")
	db, err := Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db, path
}

func strp(s string) *string { return &s }

var t0 = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)

// msg builds a body message from nick in room at t0+sec seconds; without a
// stanza-id its id attribute is unique per second.
func msg(room, sid, nick, body string, sec int) *store.Message {
	x := fmt.Sprintf("<message from='%s/%s' type='groupchat'><body>%s</body></message>", room, nick, body)
	id := "id-" + sid
	if sid == "" {
		id = fmt.Sprintf("at-%d", sec) // distinct, so fallback dedup keeps them apart
	}
	return &store.Message{
		Room: room, StanzaID: sid, ID: id, Nick: nick,
		Stamp: t0.Add(time.Duration(sec) * time.Second), Body: strp(body), XML: x,
	}
}

func mustAppend(t testing.TB, db *DB, m *store.Message) {
	t.Helper()
	if _, err := db.Append(context.Background(), m); err != nil {
		t.Fatalf("Append: %v", err)
	}
}

func bodies(ms []*store.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		if m.Body != nil {
			out[i] = *m.Body
		}
	}
	return out
}
