package sqlite

import (
	"context"
	"testing"
	"time"

	"xmppbouncer/store"
)

func TestOfflineStore(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	rows := []store.Offline{{Stamp: time.Now(), XML: "<message>1</message>"}, {Stamp: time.Now(), XML: "<message>2</message>"}, {Stamp: time.Now(), XML: "<message>3</message>"}}
	n, err := db.StoreOffline(ctx, rows, 2)
	if err != nil || n != 2 {
		t.Fatalf("stored %d, %v; want the bound of 2", n, err)
	}
	if n, err := db.StoreOffline(ctx, rows[2:], 2); err != nil || n != 0 {
		t.Fatalf("a full store took %d, %v", n, err)
	}
	got, err := db.OfflineMessages(ctx)
	if err != nil || len(got) != 2 || got[0].XML != rows[0].XML || got[1].Seq != rows[1].Seq {
		t.Fatalf("offline messages %+v, %v", got, err)
	}
	if err := db.DeleteOffline(ctx, got[0].Seq); err != nil {
		t.Fatal(err)
	}
	if c, _ := db.OfflineCount(ctx); c != 1 {
		t.Fatalf("%d left after deleting the first", c)
	}
	if n, err := db.PruneOffline(ctx, time.Now().Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("pruned %d, %v", n, err)
	}
}

func TestCursorsOnlyMoveForwardAndExpire(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	old, now := time.Now().Add(-100*24*time.Hour), time.Now()
	if err := db.SaveCursors(ctx, []store.Cursor{{Room: "r@muc", Resource: "phone", Seq: 10, Updated: now}, {Room: "r@muc", Resource: "laptop", Seq: 3, Updated: old}}); err != nil {
		t.Fatal(err)
	}
	if err := db.SaveCursors(ctx, []store.Cursor{{Room: "r@muc", Resource: "phone", Seq: 7, Updated: old}, {Room: "r@muc", Resource: "laptop", Seq: 5, Updated: old}}); err != nil {
		t.Fatal(err)
	}
	cs, err := db.Cursors(ctx)
	if err != nil || len(cs) != 2 {
		t.Fatalf("%v %v", cs, err)
	}
	for _, c := range cs {
		if c.Resource == "phone" && (c.Seq != 10 || c.Updated.Unix() != now.Unix()) || c.Resource == "laptop" && c.Seq != 5 {
			t.Fatalf("cursor %+v", c)
		}
	}
	if n, err := db.PruneCursors(ctx, now.Add(-90*24*time.Hour)); err != nil || n != 1 {
		t.Fatalf("pruned %d, %v; want the laptop's", n, err)
	}
	if cs, _ := db.Cursors(ctx); len(cs) != 1 || cs[0].Resource != "phone" {
		t.Fatalf("left %+v", cs)
	}
}

func TestAfter(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	var seqs []int64
	for i := 0; i < 10; i++ {
		m := msg("a@muc", "", "n", "b", i)
		mustAppend(t, db, m)
		seqs = append(seqs, m.Seq)
	}
	ms, err := db.After(ctx, "a@muc", seqs[4], 3, time.Time{})
	if err != nil || len(ms) != 3 || ms[0].Seq != seqs[7] || ms[2].Seq != seqs[9] {
		t.Fatalf("After kept %v, %v; want the newest 3 after the cursor", ms, err)
	}
	if ms, _ := db.After(ctx, "a@muc", seqs[9], 100, time.Time{}); len(ms) != 0 {
		t.Fatalf("after the newest: %v", ms)
	}
}
