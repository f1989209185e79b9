//go:build sqlite_fts5

package sqlite

import (
	"context"
	"slices"
	"testing"
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
	if p, err := db.Query(ctx, Query{Room: "r@muc", FullText: "walrus"}); err != nil || p.Count != 1 {
		t.Fatalf("precondition: count %d, %v", p.Count, err)
	}
	db.Close()
	db2, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	p, err := db2.Query(ctx, Query{Room: "r@muc", FullText: "walrus", Max: 10})
	if err != nil || p.Count != 2 {
		t.Fatalf("after reopen: count %d, %v; want the index rebuilt", p.Count, err)
	}
	mustAppend(t, db2, msg("r@muc", "3", "n", "new walrus", 2))
	if p, _ := db2.Query(ctx, Query{Room: "r@muc", FullText: "walrus"}); p.Count != 3 {
		t.Errorf("triggers not restored: count %d", p.Count)
	}
}
