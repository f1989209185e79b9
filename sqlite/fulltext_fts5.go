//go:build sqlite_fts5

package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// FullTextFTS5 reports whether this build searches with FTS5 (whole-word,
// case- and diacritic-insensitive) rather than the LIKE substring fallback.
const FullTextFTS5 = true

// The FTS5 index is contentless (the text lives in messages only) and also
// indexes a per-room token, so that a room's matches are found inside the
// index rather than by checking every match of every room. It is not a
// numbered migration because it exists only in builds with the sqlite_fts5
// tag: a build without it drops the sync triggers (fulltext_like.go), and
// this build then rebuilds the index from messages.
const ftsTable = `CREATE VIRTUAL TABLE messages_fts USING fts5(body, room,
    content='', contentless_delete=1, tokenize='unicode61 remove_diacritics 2')`

var ftsTriggers = []string{"messages_fts_ai", "messages_fts_ad", "messages_fts_au"}

const ftsTriggerSQL = `
CREATE TRIGGER messages_fts_ai AFTER INSERT ON messages WHEN new.body IS NOT NULL BEGIN
    INSERT INTO messages_fts(rowid, body, room) VALUES (new.seq, new.body, 'r' || new.room_id);
END;
CREATE TRIGGER messages_fts_ad AFTER DELETE ON messages WHEN old.body IS NOT NULL BEGIN
    DELETE FROM messages_fts WHERE rowid = old.seq;
END;
CREATE TRIGGER messages_fts_au AFTER UPDATE OF body, room_id ON messages BEGIN
    DELETE FROM messages_fts WHERE rowid = old.seq;
    INSERT INTO messages_fts(rowid, body, room)
        SELECT new.seq, new.body, 'r' || new.room_id WHERE new.body IS NOT NULL;
END;
`

func setupFullText(ctx context.Context, w *sql.DB) error {
	var tableSQL sql.NullString
	err := w.QueryRowContext(ctx, `SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'messages_fts'`).Scan(&tableSQL)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("inspect fts table: %w", err)
	}
	var n int
	err = w.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name IN (?, ?, ?)`,
		ftsTriggers[0], ftsTriggers[1], ftsTriggers[2]).Scan(&n)
	if err != nil {
		return fmt.Errorf("inspect fts triggers: %w", err)
	}
	if tableSQL.String == ftsTable && n == len(ftsTriggers) {
		return nil
	}

	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin fts setup: %w", err)
	}
	defer tx.Rollback()
	for _, t := range ftsTriggers {
		if _, err := tx.ExecContext(ctx, "DROP TRIGGER IF EXISTS "+t); err != nil {
			return fmt.Errorf("drop %s: %w", t, err)
		}
	}
	switch {
	case tableSQL.Valid && tableSQL.String != ftsTable:
		// An index of an older layout: replace it.
		if _, err := tx.ExecContext(ctx, `DROP TABLE messages_fts`); err != nil {
			return fmt.Errorf("drop old fts table: %w", err)
		}
		fallthrough
	case !tableSQL.Valid:
		if _, err := tx.ExecContext(ctx, ftsTable); err != nil {
			return fmt.Errorf("create fts table: %w", err)
		}
	default:
		// Triggers were missing, so the index may lack rows inserted
		// and still hold rows deleted meanwhile: start over.
		if _, err := tx.ExecContext(ctx, `INSERT INTO messages_fts(messages_fts) VALUES ('delete-all')`); err != nil {
			return fmt.Errorf("clear fts index: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, ftsTriggerSQL); err != nil {
		return fmt.Errorf("create fts triggers: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO messages_fts(rowid, body, room)
		SELECT seq, body, 'r' || room_id FROM messages WHERE body IS NOT NULL`); err != nil {
		return fmt.Errorf("fill fts index: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit fts setup: %w", err)
	}
	return nil
}

// ftsDriveLimit is the number of matches in a room up to which a query
// fetches the matching rows by seq and sorts them, rather than walking the
// room in archive order and testing each message against the match set.
var ftsDriveLimit = 2000

// fullTextFilter turns text into a condition on messages m of room roomID
// requiring every whitespace-separated term as a word. Each term becomes an
// FTS5 string (double-quoted, inner quotes doubled) restricted to the body
// column, so operators, column filters, prefixes and NEAR() in user input
// are plain text. It returns nil when text has no terms.
func (db *DB) fullTextFilter(ctx context.Context, qr querier, roomID int64, text string) (*textFilter, error) {
	// FTS5 reads the query as a C string, so a NUL would cut it inside a
	// quoted term; XML (and so XMPP) cannot carry NUL anyway.
	terms := strings.Fields(strings.ReplaceAll(text, "\x00", ""))
	if len(terms) == 0 {
		return nil, nil
	}
	parts := []string{fmt.Sprintf(`room : "r%d"`, roomID)}
	for _, t := range terms {
		parts = append(parts, `body : "`+strings.ReplaceAll(t, `"`, `""`)+`"`)
	}
	match := strings.Join(parts, " AND ")
	f := &textFilter{
		clause: `m.seq IN (SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?)`,
		args:   []any{match},
	}
	if err := qr.QueryRowContext(ctx, `SELECT count(*) FROM messages_fts WHERE messages_fts MATCH ?`, match).Scan(&f.count); err != nil {
		return nil, fmt.Errorf("sqlite: full-text count: %w", err)
	}
	f.drive = f.count <= ftsDriveLimit
	return f, nil
}
