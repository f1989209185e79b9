package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"xmppbouncer/store"
)

func rawOpen(t *testing.T, path string) *sql.DB {
	t.Helper()
	registerDriver()
	w, err := sql.Open(driverName, "file:"+path+"?_journal_mode=WAL&_foreign_keys=1")
	if err != nil {
		t.Fatal(err)
	}
	w.SetMaxOpenConns(1)
	return w
}

// schemaOf lists the archive's own tables and indexes (not the FTS5
// objects, which depend on the build tag) as "type name: sql".
func schemaOf(t *testing.T, w *sql.DB) []string {
	t.Helper()
	rows, err := w.Query(`SELECT type, name, coalesce(sql, '') FROM sqlite_master
		WHERE name NOT LIKE 'messages_fts%' AND name NOT LIKE 'sqlite_%' ORDER BY type, name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var typ, name, s string
		if err := rows.Scan(&typ, &name, &s); err != nil {
			t.Fatal(err)
		}
		out = append(out, typ+" "+name+": "+strings.Join(strings.Fields(s), " "))
	}
	return out
}

func userVersion(t *testing.T, w *sql.DB) int {
	t.Helper()
	var v int
	if err := w.QueryRow(`PRAGMA user_version`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestMigrationsFromEveryVersion(t *testing.T) {
	ctx := context.Background()
	latest := SchemaVersion()
	if latest < 2 {
		t.Fatalf("only %d migrations", latest)
	}

	fresh, _ := openTest(t)
	want := schemaOf(t, fresh.w)
	if !slices.ContainsFunc(want, func(s string) bool { return strings.Contains(s, "messages_room_nick") }) {
		t.Fatalf("fresh schema lacks the v2 index: %v", want)
	}

	for from := 0; from < latest; from++ {
		t.Run(fmt.Sprintf("from_v%d", from), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "old.db")
			w := rawOpen(t, path)
			if err := migrate(ctx, w, from); err != nil {
				t.Fatal(err)
			}
			if v := userVersion(t, w); v != from {
				t.Fatalf("user_version %d after migrating to %d", v, from)
			}
			if from >= 1 {
				// Data written by a build at this version, using only
				// the v1 columns.
				seed := []string{
					`INSERT INTO rooms(id, jid) VALUES (1, 'old@muc')`,
					`INSERT INTO messages(room_id, stamp, stanza_id, nick, real_jid, body, xml)
					 VALUES (1, 1700000000000000, 'sid-old', 'nick1', 'a@b', 'kept body', '<message/>')`,
					`INSERT INTO messages(room_id, stamp, fkey, nick, xml)
					 VALUES (1, 1700000001000000, x'00', 'nick2', '<message><reactions xmlns="urn:xmpp:reactions:0"/></message>')`,
					`INSERT INTO state(key, value) VALUES ('k', 'v')`,
				}
				if from < 5 {
					// A chat state, which is not history: migration 5
					// removes what earlier versions stored.
					seed = append(seed, `INSERT INTO messages(room_id, stamp, fkey, nick, xml)
					 VALUES (1, 1700000002000000, x'01', 'nick2', '<message><composing xmlns="http://jabber.org/protocol/chatstates"/></message>')`)
				}
				for _, q := range seed {
					if _, err := w.Exec(q); err != nil {
						t.Fatalf("seed v%d: %v", from, err)
					}
				}
			}
			w.Close()

			db, err := Open(ctx, path)
			if err != nil {
				t.Fatalf("Open from v%d: %v", from, err)
			}
			defer db.Close()
			if v := userVersion(t, db.w); v != latest {
				t.Fatalf("user_version %d, want %d", v, latest)
			}
			if got := schemaOf(t, db.w); !slices.Equal(got, want) {
				t.Errorf("schema after upgrade from v%d differs from fresh:\n got %v\nwant %v", from, got, want)
			}
			if from < 1 {
				return
			}
			ms, err := db.History(ctx, "old@muc", store.NoHistoryLimit, 10)
			if err != nil || len(ms) != 2 || ms[0].Body == nil || *ms[0].Body != "kept body" || ms[1].Body != nil {
				t.Fatalf("data after upgrade: %v, %v", ms, err)
			}
			p, err := db.Query(ctx, store.Query{Room: "old@muc", With: "old@muc/nick1", Max: 5})
			if err != nil || len(p.Messages) != 1 || p.First != "sid-old" {
				t.Errorf("with-query after upgrade: %+v, %v", p, err)
			}
			if p, err := db.Query(ctx, store.Query{Room: "old@muc", FullText: "kept"}); err != nil || p.Count != 1 {
				t.Errorf("full text over upgraded data: %+v, %v", p, err)
			}
			if p, err := db.Query(ctx, store.Query{Room: "old@muc"}); err != nil || p.Count != 2 {
				t.Errorf("room count after upgrade: %+v, %v", p, err)
			}
			if v, ok, _ := db.GetState(ctx, "k"); !ok || v != "v" {
				t.Errorf("state after upgrade: %q %v", v, ok)
			}
			// New writes go on with ids after the old ones.
			m := msg("old@muc", "sid-new", "n", "new", 0)
			mustAppend(t, db, m)
			if m.Seq <= 2 {
				t.Errorf("new seq %d collides with old rows", m.Seq)
			}
			if p, err := db.Query(ctx, store.Query{Room: "old@muc"}); err != nil || p.Count != 3 {
				t.Errorf("room count after a new message: %+v, %v", p, err)
			}
		})
	}
}

func TestOpenRejectsNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "future.db")
	w := rawOpen(t, path)
	if _, err := w.Exec(fmt.Sprintf("PRAGMA user_version = %d", SchemaVersion()+1)); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if db, err := Open(context.Background(), path); err == nil {
		db.Close()
		t.Fatal("Open accepted a database from a newer schema")
	}
}

// A failing migration leaves the database at its previous version.
func TestFailedMigrationRollsBack(t *testing.T) {
	ctx := context.Background()
	db, path := openTest(t)
	db.Close()
	saved := migrations
	t.Cleanup(func() { migrations = saved })
	migrations = append(slices.Clip(saved),
		migration{version: len(saved) + 1, name: "bad.sql", sql: `CREATE TABLE extra(x); CREATE TABLE state(y);`})
	if db, err := Open(ctx, path); err == nil {
		db.Close()
		t.Fatal("Open succeeded with a failing migration")
	}
	migrations = saved
	w := rawOpen(t, path)
	defer w.Close()
	if v := userVersion(t, w); v != len(saved) {
		t.Errorf("user_version %d after failed migration, want %d", v, len(saved))
	}
	var n int
	if err := w.QueryRow(`SELECT count(*) FROM sqlite_master WHERE name = 'extra'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("half-applied migration left table extra (%d, %v)", n, err)
	}
}
