//go:build !sqlite_fts5

package sqlite

import (
	"context"
	"slices"
	"testing"
)

func TestLikeSubstringAndEscaping(t *testing.T) {
	db := ftArchive(t)
	cases := map[string][]string{
		"fo":    corpus(0, 2), // substring match
		"%":     corpus(3),    // literal percent, not a wildcard
		"_":     corpus(3),    // literal underscore
		"a_b":   corpus(3),
		"0%":    corpus(3),
		"a%b":   nil, // would match "a...b" bodies if % were a wildcard
		"q_ick": nil,
		`\`:     nil,
		`"`:     corpus(4, 7),
	}
	for q, want := range cases {
		if got := ftSearch(t, db, q); !slices.Equal(got, want) {
			t.Errorf("fulltext %q = %q, want %q", q, got, want)
		}
	}
}

// An FTS5 build leaves sync triggers that a build without the fts5 module
// cannot run; Open must drop them so archiving keeps working.
func TestLikeBuildDropsFTSTriggers(t *testing.T) {
	ctx := context.Background()
	db, path := openTest(t)
	if _, err := db.w.ExecContext(ctx, `CREATE TRIGGER messages_fts_ai AFTER INSERT ON messages BEGIN
		INSERT INTO messages_fts(rowid, body) VALUES (new.seq, new.body); END`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Append(ctx, msg("r@muc", "1", "n", "x", 0)); err == nil {
		t.Fatal("precondition: the stale trigger should break inserts")
	}
	db.Close()
	db2, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	if _, err := db2.Append(ctx, msg("r@muc", "1", "n", "x", 0)); err != nil {
		t.Fatalf("Append after reopen: %v", err)
	}
}
