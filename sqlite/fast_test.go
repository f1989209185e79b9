package sqlite

import (
	"bytes"
	"context"
	"testing"
	"time"

	"xmppbouncer/store"
)

// TestFastTokens: tokens survive a reopen, a count must grow, and revoking
// a device removes its tokens only.
func TestFastTokens(t *testing.T) {
	db, path := openTest(t)
	ctx := context.Background()
	now := time.Unix(1700000000, 0).UTC()
	a := store.FastToken{Hash: bytes.Repeat([]byte{1}, 32), UserAgent: "phone", Software: "Conversations", Device: "Pixel", Mechanism: "HT-SHA-256-NONE", Created: now, Expires: now.Add(time.Hour)}
	b := store.FastToken{Hash: bytes.Repeat([]byte{2}, 32), UserAgent: "tablet", Mechanism: "HT-SHA-256-ENDP", Created: now, Expires: now.Add(time.Hour)}
	for _, tok := range []store.FastToken{a, b} {
		if err := db.AddFastToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		count uint64
		ok    bool
	}{{0, true}, {5, true}, {5, false}, {4, false}, {6, true}, {0, true}} {
		if ok, err := db.UseFastToken(ctx, a.Hash, c.count, now.Add(time.Minute)); err != nil || ok != c.ok {
			t.Fatalf("use with count %d = %v, %v; want %v", c.count, ok, err, c.ok)
		}
	}
	db.Close()
	db2, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	got, err := db2.FastTokens(ctx, "phone")
	if err != nil || len(got) != 1 || got[0].Count != 6 || got[0].LastUsed != now.Add(time.Minute) || got[0].Device != "Pixel" || !bytes.Equal(got[0].Hash, a.Hash) {
		t.Fatalf("phone tokens after reopen: %+v, %v", got, err)
	}
	if all, _ := db2.FastTokens(ctx, ""); len(all) != 2 {
		t.Fatalf("all tokens: %+v", all)
	}
	if n, err := db2.DeleteFastTokens(ctx, "phone"); n != 1 || err != nil {
		t.Fatalf("revoke: %d, %v", n, err)
	}
	if ok, _ := db2.UseFastToken(ctx, a.Hash, 0, now); ok {
		t.Fatal("a revoked token was usable")
	}
	if n, _ := db2.DeleteExpiredFastTokens(ctx, now.Add(2*time.Hour)); n != 1 {
		t.Fatalf("pruned %d", n)
	}
}
