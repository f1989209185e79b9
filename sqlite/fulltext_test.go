package sqlite

import (
	"context"
	"slices"
	"testing"

	"xmppbouncer/store"
)

var ftCorpus = []string{
	"the quick brown fox",     // 0
	"lazy dog sleeps",         // 1
	"Fox hunting is cruel",    // 2
	"100% sure about a_b",     // 3
	`she said "hello" loudly`, // 4
	"NEAR( lookup OR star*",   // 5
	"quick thinking",          // 6
	`a" OR b* tricky`,         // 7
	"nothing to see here",     // 8
}

func ftArchive(t *testing.T) *DB {
	t.Helper()
	db, _ := openTest(t)
	var ms []*store.Message
	for i, b := range ftCorpus {
		ms = append(ms, msg("ft@muc", "", "n", b, i))
	}
	// Body-less stanzas are never full-text hits.
	ms = append(ms, &store.Message{Room: "ft@muc", Nick: "n", Stamp: t0.Add(100), XML: "<message><body>fox</body></message>"})
	// Nor are other rooms' messages.
	ms = append(ms, msg("elsewhere@muc", "", "n", "fox fox fox", 0))
	if _, err := db.AppendBatch(context.Background(), ms); err != nil {
		t.Fatal(err)
	}
	return db
}

func ftSearch(t *testing.T, db *DB, text string) []string {
	t.Helper()
	p, err := db.Query(context.Background(), store.Query{Room: "ft@muc", FullText: text, Max: 100})
	if err != nil {
		t.Fatalf("fulltext %q: %v", text, err)
	}
	if p.Count != len(p.Messages) {
		t.Errorf("fulltext %q: Count %d but %d messages", text, p.Count, len(p.Messages))
	}
	return bodies(p.Messages)
}

func corpus(idx ...int) []string {
	var out []string
	for _, i := range idx {
		out = append(out, ftCorpus[i])
	}
	return out
}

func TestFullTextFinds(t *testing.T) {
	db := ftArchive(t)
	cases := map[string][]string{
		"fox":            corpus(0, 2),
		"FOX":            corpus(0, 2),
		"quick":          corpus(0, 6),
		"quick fox":      corpus(0),
		"  quick   fox ": corpus(0),
		"fox dog":        nil,
		"hello":          corpus(4),
		"sleeps lazy":    corpus(1),
	}
	for q, want := range cases {
		if got := ftSearch(t, db, q); !slices.Equal(got, want) {
			t.Errorf("fulltext %q = %q, want %q", q, got, want)
		}
	}
	// Empty or blank search text filters nothing.
	if got := ftSearch(t, db, " \t"); len(got) != len(ftCorpus)+1 {
		t.Errorf("blank fulltext returned %d messages", len(got))
	}
}

// Operator syntax in user input is searched as text, never interpreted.
func TestFullTextHostileInput(t *testing.T) {
	db := ftArchive(t)
	cases := map[string][]string{
		`fox OR dog`:                 nil,       // OR is a word here: no message has fox, OR and dog
		`fox NOT fox`:                nil,       // likewise NOT
		`a" OR b*`:                   corpus(7), // the literal text only
		`NEAR(`:                      corpus(5), // no syntax error
		`NEAR(fox dog)`:              nil,
		`body:fox`:                   nil,          // not a column filter
		`-fox`:                       corpus(0, 2), // not negation; FTS5 tokenises it to fox (LIKE: below)
		`star*`:                      corpus(5),
		`'; DROP TABLE messages; --`: nil,
	}
	for q, want := range cases {
		got := ftSearch(t, db, q)
		if q == `-fox` && !FullTextFTS5 {
			want = nil // no body has the substring "-fox"
		}
		if !slices.Equal(got, want) {
			t.Errorf("fulltext %q = %q, want %q", q, got, want)
		}
	}
	for _, q := range []string{`"`, `""`, `*`, `(`, `)`, `^`, `:`, `\`, `NEAR`, `AND`, `{`, "\x00", `%`, `_`} {
		if _, err := db.Query(context.Background(), store.Query{Room: "ft@muc", FullText: q, Max: 10}); err != nil {
			t.Errorf("fulltext %q: %v", q, err)
		}
	}
	if got := ftSearch(t, db, "fox"); len(got) != 2 {
		t.Fatalf("archive changed by hostile queries: %q", got)
	}
}
