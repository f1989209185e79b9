package sqlite

import (
	"context"
	"testing"
	"time"

	"xmppbouncer/store"
)

func TestUpstreamSMState(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	if _, ok, err := db.UpstreamSM(ctx); err != nil || ok {
		t.Fatalf("fresh: %v %v", ok, err)
	}
	if err := db.SetUpstreamSM(ctx, store.UpstreamSM{ID: "a", Bound: "x@y/z"}); err != nil {
		t.Fatal(err)
	}
	if err := db.SetUpstreamH(ctx, "a", 7); err != nil {
		t.Fatal(err)
	}
	// A mark of an older session must not touch the new one.
	if err := db.SetUpstreamH(ctx, "old", 99); err != nil {
		t.Fatal(err)
	}
	st, ok, err := db.UpstreamSM(ctx)
	if err != nil || !ok || st.ID != "a" || st.H != 7 || st.Bound != "x@y/z" {
		t.Fatalf("got %+v %v %v", st, ok, err)
	}
}

func TestChatQueue(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	now := time.Now()
	cs := []*store.Chat{
		{SID: "s1", Stamp: now, Rcpt: []string{"phone", "laptop"}, XML: "<message/>"},
		{SID: "", Stamp: now, Rcpt: []string{"phone x"}, XML: "<message/>"},
		{SID: "s1", Stamp: now, Rcpt: []string{"laptop"}, XML: "<message/>"},
	}
	if err := db.StoreChats(ctx, cs); err != nil {
		t.Fatal(err)
	}
	if !cs[0].Inserted || !cs[1].Inserted || cs[2].Inserted || cs[2].Seq != cs[0].Seq {
		t.Fatalf("dedup by stanza-id: %+v %+v %+v", cs[0], cs[1], cs[2])
	}
	// "phone" is not "phone x".
	got, err := db.ChatsFor(ctx, "phone", 0, 1<<40, 10)
	if err != nil || len(got) != 1 || got[0].Seq != cs[0].Seq {
		t.Fatalf("phone: %+v %v", got, err)
	}
	if got, _ := db.ChatsFor(ctx, "phone x", 0, 1<<40, 10); len(got) != 1 {
		t.Fatalf("phone x: %+v", got)
	}
	if sid, _, err := db.LastChatSID(ctx); err != nil || sid != "s1" {
		t.Fatalf("last sid %q %v", sid, err)
	}
	// Up to seq 1, but only once an hour old.
	if n, _ := db.DeleteChats(ctx, cs[0].Seq, now.Add(-time.Hour), now.Add(-24*time.Hour)); n != 0 {
		t.Fatalf("deleted %d fresh rows", n)
	}
	if n, _ := db.DeleteChats(ctx, cs[0].Seq, now.Add(time.Hour), now.Add(-24*time.Hour)); n != 1 {
		t.Fatalf("deleted %d, want 1", n)
	}
	if n, _ := db.DeleteChats(ctx, 0, now, now.Add(time.Second)); n != 1 {
		t.Fatalf("retention deleted %d, want 1", n)
	}
}

func TestResumableSessions(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	now := time.Now()
	if err := db.SaveResumable(ctx, store.Resumable{ID: "r1", Resource: "phone", InH: 3, Expires: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := db.SetResumableState(ctx, "r1", "<presence/>", "room@muc nick"); err != nil {
		t.Fatal(err)
	}
	// Saving h again keeps the core's part.
	if err := db.SaveResumable(ctx, store.Resumable{ID: "r1", Resource: "phone", InH: 5, Expires: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	r, ok, err := db.Resumable(ctx, "r1", now)
	if err != nil || !ok || r.InH != 5 || r.Presence != "<presence/>" || r.Rooms != "room@muc nick" {
		t.Fatalf("got %+v %v %v", r, ok, err)
	}
	if _, ok, _ := db.Resumable(ctx, "r1", now.Add(2*time.Hour)); ok {
		t.Fatal("expired session still found")
	}
	if err := db.DeleteResumable(ctx, "r1", now); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := db.Resumable(ctx, "r1", now); ok {
		t.Fatal("deleted session still found")
	}
}
