package sqlite

import (
	"context"
	"fmt"
	"testing"
	"time"

	"xmppbouncer/store"
)

func count(t *testing.T, db *DB, room string) int {
	t.Helper()
	p, err := db.Query(context.Background(), store.Query{Room: room})
	if err != nil {
		t.Fatal(err)
	}
	return p.Count
}

func TestDedupByStanzaID(t *testing.T) {
	ctx := context.Background()
	db, _ := openTest(t)
	a := msg("r@muc", "sid-1", "alice", "hello", 0)
	if ins, err := db.Append(ctx, a); err != nil || !ins || a.Seq == 0 {
		t.Fatalf("first Append = %v, %v, seq %d", ins, err, a.Seq)
	}
	// A replay of the same stanza (e.g. from MAM gap fill) with another stamp and XML.
	dup := msg("r@muc", "sid-1", "alice", "hello", 3)
	dup.XML += "<!-- replayed -->"
	if ins, err := db.Append(ctx, dup); err != nil || ins {
		t.Fatalf("duplicate Append = %v, %v; want not inserted", ins, err)
	}
	if dup.Seq != a.Seq {
		t.Errorf("duplicate Seq = %d, want existing %d", dup.Seq, a.Seq)
	}
	// The same stanza-id in another room is another message.
	other := msg("s@muc", "sid-1", "alice", "hello", 0)
	if ins, err := db.Append(ctx, other); err != nil || !ins {
		t.Fatalf("Append to other room = %v, %v", ins, err)
	}
	if count(t, db, "r@muc") != 1 || count(t, db, "s@muc") != 1 {
		t.Error("unexpected row counts")
	}
}

func TestDedupFallbackKey(t *testing.T) {
	ctx := context.Background()
	db, _ := openTest(t)
	base := func(id, body string, at time.Duration) *store.Message {
		return &store.Message{Room: "r@muc", ID: id, Nick: "bob", Stamp: t0.Add(at), Body: strp(body), XML: "<message/>"}
	}
	cases := []struct {
		name string
		m    *store.Message
		ins  bool
	}{
		{"first", base("m1", "hi", 0), true},
		{"replay 20s later (delay stamp vs arrival)", base("m1", "hi", 20*time.Second), false},
		{"replay 50s earlier", base("m1", "hi", -50*time.Second), false},
		{"same id and body far apart", base("m1", "hi", 10*time.Minute), true},
		{"other body", base("m1", "hi!", 0), true},
		{"other id", base("m2", "hi", 0), true},
		{"other nick", &store.Message{Room: "r@muc", ID: "m1", Nick: "eve", Stamp: t0, Body: strp("hi"), XML: "<message/>"}, true},
		{"origin-id only", &store.Message{Room: "r@muc", OriginID: "o9", Nick: "bob", Stamp: t0, Body: strp("x"), XML: "<m/>"}, true},
		{"origin-id replay", &store.Message{Room: "r@muc", OriginID: "o9", Nick: "bob", Stamp: t0.Add(5 * time.Second), Body: strp("x"), XML: "<m/>"}, false},
		{"no id", base("", "ok", 0), true},
		{"no id same second", base("", "ok", 900*time.Millisecond), false},
		{"no id next second", base("", "ok", 1500*time.Millisecond), true},
		{"no body, no id: XML decides", &store.Message{Room: "r@muc", Nick: "bob", Stamp: t0, XML: "<a/>"}, true},
		{"no body, same XML", &store.Message{Room: "r@muc", Nick: "bob", Stamp: t0, XML: "<a/>"}, false},
		{"no body, other XML", &store.Message{Room: "r@muc", Nick: "bob", Stamp: t0, XML: "<b/>"}, true},
	}
	want := 0
	for _, c := range cases {
		ins, err := db.Append(ctx, c.m)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if ins != c.ins {
			t.Errorf("%s: inserted = %v, want %v", c.name, ins, c.ins)
		}
		if ins {
			want++
		}
		if c.m.Seq == 0 {
			t.Errorf("%s: Seq not set", c.name)
		}
	}
	if n := count(t, db, "r@muc"); n != want {
		t.Errorf("room has %d messages, want %d", n, want)
	}
}

func TestAppendBatch(t *testing.T) {
	ctx := context.Background()
	db, _ := openTest(t)
	mustAppend(t, db, msg("r@muc", "s0", "n", "pre-existing", 0))
	batch := []*store.Message{
		msg("r@muc", "s0", "n", "pre-existing", 0),
		msg("r@muc", "s1", "n", "one", 1),
		msg("r@muc", "s1", "n", "one", 1), // duplicate inside the batch
		msg("q@muc", "s2", "n", "two", 2),
	}
	n, err := db.AppendBatch(ctx, batch)
	if err != nil || n != 2 {
		t.Fatalf("AppendBatch = %d, %v; want 2", n, err)
	}
	if batch[1].Seq == 0 || batch[2].Seq != batch[1].Seq {
		t.Errorf("in-batch duplicate seqs %d, %d", batch[1].Seq, batch[2].Seq)
	}
	// A failing batch commits nothing.
	bad := []*store.Message{msg("r@muc", "s9", "n", "x", 9), {Room: ""}}
	if _, err := db.AppendBatch(ctx, bad); err == nil {
		t.Fatal("batch with an invalid message succeeded")
	}
	if c := count(t, db, "r@muc"); c != 2 {
		t.Errorf("r@muc has %d messages, want 2", c)
	}
}

func TestSeqMonotonicAfterPrune(t *testing.T) {
	ctx := context.Background()
	db, _ := openTest(t)
	a := &store.Message{Room: "r@muc", ID: "1", Nick: "n", Stamp: t0, Body: strp("a"), XML: "<m/>"}
	mustAppend(t, db, a)
	if n, err := db.Prune(ctx, t0.Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("Prune = %d, %v", n, err)
	}
	b := &store.Message{Room: "r@muc", ID: "2", Nick: "n", Stamp: t0, Body: strp("b"), XML: "<m/>"}
	mustAppend(t, db, b)
	if b.Seq <= a.Seq {
		t.Fatalf("seq reused after prune: %d then %d (archive ids must not be reused)", a.Seq, b.Seq)
	}
	if _, err := db.Query(ctx, store.Query{Room: "r@muc", AfterID: a.ArchiveID()}); err == nil {
		t.Error("pruned synthetic id still resolves")
	}
}

func TestPrune(t *testing.T) {
	ctx := context.Background()
	db, _ := openTest(t)
	var ms []*store.Message
	for i := range 5000 {
		room := "a@muc"
		if i%2 == 1 {
			room = "b@muc"
		}
		w := "old"
		if i >= 4000 {
			w = "new"
		}
		ms = append(ms, msg(room, fmt.Sprint("s", i), "n", w, i))
	}
	if _, err := db.AppendBatch(ctx, ms); err != nil {
		t.Fatal(err)
	}
	n, err := db.Prune(ctx, t0.Add(4000*time.Second))
	if err != nil || n != 4000 {
		t.Fatalf("Prune = %d, %v; want 4000", n, err)
	}
	for _, room := range []string{"a@muc", "b@muc"} {
		p, err := db.Query(ctx, store.Query{Room: room, Max: 1000})
		if err != nil {
			t.Fatal(err)
		}
		if p.Count != 500 {
			t.Errorf("%s: %d left, want 500", room, p.Count)
		}
		for _, m := range p.Messages {
			if m.Stamp.Before(t0.Add(4000 * time.Second)) {
				t.Errorf("%s: message at %v survived", room, m.Stamp)
			}
		}
		// The full-text index follows deletions.
		if p, err := db.Query(ctx, store.Query{Room: room, FullText: "old"}); err != nil || p.Count != 0 {
			t.Errorf("%s: fulltext finds %d pruned messages (%v)", room, p.Count, err)
		}
	}
	if n, err := db.Prune(ctx, t0.Add(4000*time.Second)); err != nil || n != 0 {
		t.Errorf("second Prune = %d, %v", n, err)
	}
	if _, err := db.Prune(ctx, t0.Add(time.Hour*24)); err != nil {
		t.Fatal(err)
	}
	if rooms, _ := db.Rooms(ctx); len(rooms) != 0 {
		t.Errorf("Rooms after pruning everything = %v", rooms)
	}
}
