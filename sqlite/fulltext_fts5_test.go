//go:build sqlite_fts5

package sqlite

import (
	"context"
	"slices"
	"testing"
	"time"

	"xmppbouncer/store"
)

func TestFTS5WordSemantics(t *testing.T) {
	db := ftArchive(t)
	mustAppend(t, db, msg("ft@muc", "", "n", "un café crème", 50))
	cases := map[string][]string{
		"fo":      nil, // whole tokens only, no prefix matching
		"cafe":    {"un café crème"},
		"CRÈME":   {"un café crème"},
		"a_b":     corpus(3), // phrase "a b"
		`%`:       nil,       // no token in it
		`"`:       nil,
		`"hello"`: corpus(4),
	}
	for q, want := range cases {
		if got := ftSearch(t, db, q); !slices.Equal(got, want) {
			t.Errorf("fulltext %q = %q, want %q", q, got, want)
		}
	}
}

// A build without FTS5 drops the sync triggers and archives on; the next
// FTS5 build must rebuild the index so those messages are searchable.
func TestFTS5RebuildAfterNonFTSBuild(t *testing.T) {
	ctx := context.Background()
	db, path := openTest(t)
	mustAppend(t, db, msg("r@muc", "1", "n", "indexed walrus", 0))
	for _, tr := range []string{"messages_fts_ai", "messages_fts_ad", "messages_fts_au"} {
		if _, err := db.w.ExecContext(ctx, "DROP TRIGGER "+tr); err != nil {
			t.Fatal(err)
		}
	}
	mustAppend(t, db, msg("r@muc", "2", "n", "unindexed walrus", 1))
	if p, err := db.Query(ctx, store.Query{Room: "r@muc", FullText: "walrus"}); err != nil || p.Count != 1 {
		t.Fatalf("precondition: count %d, %v", p.Count, err)
	}
	db.Close()
	db2, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	p, err := db2.Query(ctx, store.Query{Room: "r@muc", FullText: "walrus", Max: 10})
	if err != nil || p.Count != 2 {
		t.Fatalf("after reopen: count %d, %v; want the index rebuilt", p.Count, err)
	}
	mustAppend(t, db2, msg("r@muc", "3", "n", "new walrus", 2))
	if p, _ := db2.Query(ctx, store.Query{Room: "r@muc", FullText: "walrus"}); p.Count != 3 {
		t.Errorf("triggers not restored: count %d", p.Count)
	}
}

// Full text combined with other filters gives the same answers whether the
// query starts from the matches or from the room index.
func TestFTS5BothPlans(t *testing.T) {
	ctx := context.Background()
	db, _ := openTest(t)
	var ms []*store.Message
	for i := range 300 {
		body := "plain"
		if i%3 == 0 {
			body = "needle here"
		}
		ms = append(ms, msg("p@muc", "", "n", body, i))
	}
	if _, err := db.AppendBatch(ctx, ms); err != nil {
		t.Fatal(err)
	}
	queries := []store.Query{
		{FullText: "needle", Max: 10},
		{FullText: "needle", Max: 10, BeforeSet: true},
		{FullText: "needle", Max: 10, Start: t0.Add(100 * time.Second), End: t0.Add(200 * time.Second)},
		{FullText: "needle here", Max: 5, After: ms[150].ArchiveID()},
		{FullText: "needle", Max: 5, Before: ms[150].ArchiveID(), BeforeSet: true},
		{FullText: "needle", IDs: []string{ms[0].ArchiveID(), ms[1].ArchiveID()}, Max: 5},
	}
	saved := ftsDriveLimit
	defer func() { ftsDriveLimit = saved }()
	for _, q := range queries {
		q.Room = "p@muc"
		var pages [2]*store.Page
		for i, limit := range []int{1 << 30, 0} {
			ftsDriveLimit = limit
			p, err := db.Query(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			pages[i] = p
		}
		a, b := pages[0], pages[1]
		if !slices.Equal(ids(a.Messages), ids(b.Messages)) || a.Count != b.Count || a.Complete != b.Complete || a.First != b.First {
			t.Errorf("%+v: plans disagree: %v/%d vs %v/%d", q, ids(a.Messages), a.Count, ids(b.Messages), b.Count)
		}
		for _, m := range a.Messages {
			if *m.Body != "needle here" {
				t.Errorf("%+v: returned %q", q, *m.Body)
			}
		}
	}
	// Spot-check one count: messages 102..198 step 3 in [100 s, 200 s].
	ftsDriveLimit = saved
	if p, _ := db.Query(ctx, withRoom(queries[2], "p@muc")); p.Count != 33 {
		t.Errorf("count in range = %d, want 33", p.Count)
	}
}

func withRoom(q store.Query, r string) store.Query { q.Room = r; return q }

// An index left in an older layout is replaced and refilled.
func TestFTS5ReplacesOldLayout(t *testing.T) {
	ctx := context.Background()
	db, path := openTest(t)
	mustAppend(t, db, msg("r@muc", "1", "n", "archived narwhal", 0))
	for _, s := range []string{"DROP TRIGGER messages_fts_ai", "DROP TRIGGER messages_fts_ad", "DROP TRIGGER messages_fts_au",
		"DROP TABLE messages_fts", "CREATE VIRTUAL TABLE messages_fts USING fts5(body, content='messages', content_rowid='seq')"} {
		if _, err := db.w.ExecContext(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	db2, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	if p, err := db2.Query(ctx, store.Query{Room: "r@muc", FullText: "narwhal", Max: 1}); err != nil || p.Count != 1 || len(p.Messages) != 1 {
		t.Fatalf("after layout change: %+v, %v", p, err)
	}
}
