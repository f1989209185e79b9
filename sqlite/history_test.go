package sqlite

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"xmppbouncer/store"
)

// historyRoom archives 20 messages "m00".."m19", 10 s apart, the newest
// one 5 s before now, each with XML of exactly 100 bytes.
func historyRoom(t *testing.T) (*DB, time.Time) {
	t.Helper()
	db, _ := openTest(t)
	now := time.Now().UTC()
	var ms []*store.Message
	for i := range 20 {
		body := fmt.Sprintf("m%02d", i)
		x := "<message><body>" + body + "</body></message>"
		x += strings.Repeat(" ", 100-len(x))
		ms = append(ms, &store.Message{Room: "h@muc", StanzaID: body, Nick: "n", Body: strp(body), XML: x,
			Stamp: now.Add(-time.Duration(19-i)*10*time.Second - 5*time.Second)})
	}
	if _, err := db.AppendBatch(context.Background(), ms); err != nil {
		t.Fatal(err)
	}
	return db, now
}

func names(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprintf("m%02d", i))
	}
	return out
}

func TestHistory(t *testing.T) {
	db, now := historyRoom(t)
	stamp := func(i int) time.Time { return now.Add(-time.Duration(19-i)*10*time.Second - 5*time.Second) }
	lim := func(f func(*store.HistoryLimit)) store.HistoryLimit { l := store.NoHistoryLimit; f(&l); return l }
	cases := []struct {
		name       string
		lim        store.HistoryLimit
		defaultMax int
		want       []string
	}{
		{"nothing set: default", store.NoHistoryLimit, 7, names(13, 19)},
		{"nothing set, default above size", store.NoHistoryLimit, 50, names(0, 19)},
		{"default 0 disables", store.NoHistoryLimit, 0, nil},
		{"maxstanzas", lim(func(l *store.HistoryLimit) { l.MaxStanzas = 3 }), 7, names(17, 19)},
		{"maxstanzas above default", lim(func(l *store.HistoryLimit) { l.MaxStanzas = 10 }), 7, names(10, 19)},
		{"maxstanzas 0", lim(func(l *store.HistoryLimit) { l.MaxStanzas = 0 }), 7, nil},
		{"maxchars 250 keeps 2 whole stanzas", lim(func(l *store.HistoryLimit) { l.MaxChars = 250 }), 20, names(18, 19)},
		{"maxchars exact", lim(func(l *store.HistoryLimit) { l.MaxChars = 300 }), 20, names(17, 19)},
		{"maxchars smaller than one stanza", lim(func(l *store.HistoryLimit) { l.MaxChars = 99 }), 20, nil},
		{"maxchars 0", lim(func(l *store.HistoryLimit) { l.MaxChars = 0 }), 20, nil},
		{"seconds 30", lim(func(l *store.HistoryLimit) { l.Seconds = 30 }), 20, names(17, 19)},
		{"seconds 0", lim(func(l *store.HistoryLimit) { l.Seconds = 0 }), 20, nil},
		{"since a message's stamp excludes it", lim(func(l *store.HistoryLimit) { l.Since = stamp(15) }), 20, names(16, 19)},
		{"since just before a message includes it", lim(func(l *store.HistoryLimit) { l.Since = stamp(15).Add(-time.Microsecond) }), 20, names(15, 19)},
		{"since capped by default", lim(func(l *store.HistoryLimit) { l.Since = stamp(0).Add(-time.Hour) }), 4, names(16, 19)},
		{"since and maxstanzas: fewer wins", lim(func(l *store.HistoryLimit) { l.Since = stamp(10); l.MaxStanzas = 2 }), 20, names(18, 19)},
		{"since and seconds: later wins", lim(func(l *store.HistoryLimit) { l.Since = stamp(10); l.Seconds = 30 }), 20, names(17, 19)},
		{"maxchars and maxstanzas", lim(func(l *store.HistoryLimit) { l.MaxChars = 1000; l.MaxStanzas = 4 }), 20, names(16, 19)},
	}
	for _, c := range cases {
		got, err := db.History(context.Background(), "h@muc", c.lim, c.defaultMax)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !slices.Equal(bodies(got), c.want) {
			t.Errorf("%s: got %v, want %v", c.name, bodies(got), c.want)
		}
	}
	if got, err := db.History(context.Background(), "unknown@muc", store.NoHistoryLimit, 20); err != nil || got != nil {
		t.Errorf("unknown room: %v, %v", got, err)
	}
}
