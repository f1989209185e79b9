package sqlite

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"xmppbouncer/store"
)

const mamRoom = "mam@muc"

// mamArchive archives 500 messages b000..b499 one second apart. Every
// seventh has no stanza-id (so it is exposed as "xb-<seq>"), they are
// appended in shuffled order (as a gap fill would), and pairs share a stamp
// so ordering must fall back to seq.
func mamArchive(t *testing.T) (*DB, []*store.Message) {
	t.Helper()
	db, _ := openTest(t)
	var ms []*store.Message
	for i := range 500 {
		sid := fmt.Sprintf("sid-%03d", i)
		if i%7 == 3 {
			sid = ""
		}
		m := msg(mamRoom, sid, fmt.Sprintf("nick%d", i%3), fmt.Sprintf("b%03d", i), i/2*2)
		m.ID = fmt.Sprintf("id%d", i)
		if i%5 == 0 {
			m.RealJID = "five@example.org"
		}
		ms = append(ms, m)
	}
	// Append in chronological order so that within equal stamps seq order
	// is index order; then a noise room.
	if _, err := db.AppendBatch(context.Background(), ms); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, db, msg("other@muc", "sid-000", "x", "noise", 1))
	mustAppend(t, db, msg("other@muc", "", "x", "noise without stanza-id", 2))
	return db, ms
}

func ids(ms []*store.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ArchiveID()
	}
	return out
}

func TestMAMPageForward(t *testing.T) {
	ctx := context.Background()
	db, all := mamArchive(t)
	want := ids(all)
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		if pages > 20 {
			t.Fatal("paging does not terminate")
		}
		p, err := db.Query(ctx, store.Query{Room: mamRoom, Max: 37, After: after})
		if err != nil {
			t.Fatal(err)
		}
		if p.Count != 500 {
			t.Fatalf("Count = %d", p.Count)
		}
		if len(p.Messages) == 0 || p.First != p.Messages[0].ArchiveID() || p.Last != p.Messages[len(p.Messages)-1].ArchiveID() {
			t.Fatalf("page %d: First/Last %q/%q do not match its %d messages", pages, p.First, p.Last, len(p.Messages))
		}
		got = append(got, ids(p.Messages)...)
		wantComplete := len(got) == 500
		if p.Complete != wantComplete {
			t.Fatalf("page %d: Complete = %v with %d seen", pages, p.Complete, len(got))
		}
		if p.Complete {
			break
		}
		after = p.Last
	}
	if !slices.Equal(got, want) {
		t.Fatalf("forward paging returned %d ids, not each message once in order", len(got))
	}
}

func TestMAMPageBackward(t *testing.T) {
	ctx := context.Background()
	db, all := mamArchive(t)
	var got []string
	q := store.Query{Room: mamRoom, Max: 50, BeforeSet: true} // empty <before/>: last page
	for pages := 0; ; pages++ {
		if pages > 20 {
			t.Fatal("paging does not terminate")
		}
		p, err := db.Query(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if pages == 0 && !slices.Equal(ids(p.Messages), ids(all[450:])) {
			t.Fatalf("empty <before/> gave %v, want the last 50", ids(p.Messages))
		}
		got = append(ids(p.Messages), got...)
		if p.Complete != (len(got) == 500) {
			t.Fatalf("page %d: Complete = %v with %d seen", pages, p.Complete, len(got))
		}
		if p.Complete {
			break
		}
		q.Before = p.First
	}
	if !slices.Equal(got, ids(all)) {
		t.Fatal("backward paging did not return each message exactly once in order")
	}
}

func TestMAMFlip(t *testing.T) {
	db, all := mamArchive(t)
	p, err := db.Query(context.Background(), store.Query{Room: mamRoom, Max: 10, BeforeSet: true, Flip: true})
	if err != nil {
		t.Fatal(err)
	}
	want := ids(all[490:])
	slices.Reverse(want)
	if !slices.Equal(ids(p.Messages), want) {
		t.Errorf("flipped last page = %v, want %v", ids(p.Messages), want)
	}
	if p.First != all[490].ArchiveID() || p.Last != all[499].ArchiveID() || p.Complete {
		t.Errorf("flipped page First/Last/Complete = %q/%q/%v", p.First, p.Last, p.Complete)
	}
}

func TestMAMFilters(t *testing.T) {
	ctx := context.Background()
	db, all := mamArchive(t)
	pick := func(f func(i int) bool) []string {
		var out []string
		for i, m := range all {
			if f(i) {
				out = append(out, m.ArchiveID())
			}
		}
		return out
	}
	cases := []struct {
		name string
		q    store.Query
		want []string
	}{
		{"after-id", store.Query{AfterID: all[489].ArchiveID()}, pick(func(i int) bool { return i > 489 })},
		{"after-id synthetic", store.Query{AfterID: all[493].ArchiveID()}, pick(func(i int) bool { return i > 493 })},
		{"before-id", store.Query{BeforeID: all[5].ArchiveID()}, pick(func(i int) bool { return i < 5 })},
		{"between ids", store.Query{AfterID: all[100].ArchiveID(), BeforeID: all[104].ArchiveID()}, pick(func(i int) bool { return i > 100 && i < 104 })},
		{"ids", store.Query{IDs: []string{all[7].ArchiveID(), all[3].ArchiveID(), all[400].ArchiveID()}}, pick(func(i int) bool { return i == 3 || i == 7 || i == 400 })},
		{"start", store.Query{Start: t0.Add(490 * time.Second)}, pick(func(i int) bool { return i >= 490 })},
		{"end", store.Query{End: t0.Add(3 * time.Second)}, pick(func(i int) bool { return i <= 3 })},
		{"start and end", store.Query{Start: t0.Add(100 * time.Second), End: t0.Add(101 * time.Second)}, pick(func(i int) bool { return i == 100 || i == 101 })},
		{"start sub-second", store.Query{Start: t0.Add(489*time.Second + time.Nanosecond)}, pick(func(i int) bool { return i >= 490 })},
		{"with occupant", store.Query{With: mamRoom + "/nick1", End: t0.Add(20 * time.Second)}, pick(func(i int) bool { return i%3 == 1 && i <= 21 })},
		{"with real jid", store.Query{With: "five@example.org", End: t0.Add(30 * time.Second)}, pick(func(i int) bool { return i%5 == 0 && i <= 31 })},
		{"with real full jid", store.Query{With: "five@example.org/phone", End: t0.Add(30 * time.Second)}, pick(func(i int) bool { return i%5 == 0 && i <= 31 })},
		{"with unknown occupant", store.Query{With: mamRoom + "/nobody"}, nil},
		{"with the room itself", store.Query{With: mamRoom, End: t0.Add(time.Second)}, pick(func(i int) bool { return i <= 1 })},
	}
	for _, c := range cases {
		q := c.q
		q.Room = mamRoom
		q.Max = 1000
		p, err := db.Query(ctx, q)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !slices.Equal(ids(p.Messages), c.want) || p.Count != len(c.want) || !p.Complete {
			t.Errorf("%s: got %v (count %d, complete %v), want %v", c.name, ids(p.Messages), p.Count, p.Complete, c.want)
		}
	}

	// Count-only query.
	p, err := db.Query(ctx, store.Query{Room: mamRoom, Start: t0.Add(400 * time.Second)})
	if err != nil || p.Count != 100 || len(p.Messages) != 0 {
		t.Errorf("Max 0: count %d, %d messages, %v", p.Count, len(p.Messages), err)
	}
	// RSM after combined with a filter: the cursor need not match the filter.
	p, err = db.Query(ctx, store.Query{Room: mamRoom, With: mamRoom + "/nick0", After: all[1].ArchiveID(), Max: 2})
	if err != nil || !slices.Equal(ids(p.Messages), []string{all[3].ArchiveID(), all[6].ArchiveID()}) || p.Complete {
		t.Errorf("after + with: %v complete=%v err=%v", ids(p.Messages), p.Complete, err)
	}
}

func TestMAMItemNotFound(t *testing.T) {
	ctx := context.Background()
	db, all := mamArchive(t)
	withSID := all[0].ArchiveID()
	synthetic := all[3].ArchiveID()
	if synthetic[:3] != "xb-" {
		t.Fatalf("message without stanza-id exposed as %q", synthetic)
	}
	bad := []store.Query{
		{After: "nope"},
		{Before: "nope", BeforeSet: true},
		{AfterID: "nope"},
		{BeforeID: "nope"},
		{IDs: []string{withSID, "nope"}},
		{After: "xb-999999"},
		{After: "xb-00" + synthetic[3:]},
		{After: "xb-" + fmt.Sprint(all[0].Seq)}, // row has a stanza-id, so its xb- form is not an archive id
	}
	for _, q := range bad {
		q.Room = mamRoom
		q.Max = 10
		if _, err := db.Query(ctx, q); !errors.Is(err, store.ErrItemNotFound) {
			t.Errorf("%+v: err = %v, want ErrItemNotFound", q, err)
		}
	}
	// Also when only the count is asked for.
	if _, err := db.Query(ctx, store.Query{Room: mamRoom, After: "nope"}); !errors.Is(err, store.ErrItemNotFound) {
		t.Errorf("count-only query with unknown after: %v", err)
	}
	// An id from another room is unknown here.
	other, _ := db.Last(ctx, "other@muc")
	if other == nil || other.StanzaID != "" {
		t.Fatalf("noise room's last message: %+v", other)
	}
	if _, err := db.Query(ctx, store.Query{Room: mamRoom, After: other.ArchiveID(), Max: 1}); !errors.Is(err, store.ErrItemNotFound) {
		t.Errorf("foreign id: %v", err)
	}
	if _, err := db.Query(ctx, store.Query{Room: "nowhere@muc", After: withSID, Max: 1}); !errors.Is(err, store.ErrItemNotFound) {
		t.Errorf("unknown room with id: %v", err)
	}
	p, err := db.Query(ctx, store.Query{Room: "nowhere@muc", Max: 5})
	if err != nil || len(p.Messages) != 0 || !p.Complete || p.Count != 0 {
		t.Errorf("unknown room: %+v, %v", p, err)
	}
	// Both forms resolve.
	for _, id := range []string{withSID, synthetic} {
		p, err := db.Query(ctx, store.Query{Room: mamRoom, IDs: []string{id}, Max: 5})
		if err != nil || len(p.Messages) != 1 || p.Messages[0].ArchiveID() != id {
			t.Errorf("ids=%q: %v, %v", id, p, err)
		}
	}
}
