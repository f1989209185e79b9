//go:build sqlite_fts5

package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// FullTextFTS5 reports whether this build searches with FTS5 (whole-word,
// case- and diacritic-insensitive) rather than the LIKE substring fallback.
const FullTextFTS5 = true

// The FTS5 index is an external-content table over messages.body kept in
// sync by triggers. It is not a numbered migration because it exists only in
// builds with the sqlite_fts5 tag: a build without it drops the triggers
// (see fulltext_like.go) and the next FTS5 build rebuilds the index.
const ftsSchema = `
CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5(
    body, content='messages', content_rowid='seq',
    tokenize='unicode61 remove_diacritics 2');
CREATE TRIGGER messages_fts_ai AFTER INSERT ON messages WHEN new.body IS NOT NULL BEGIN
    INSERT INTO messages_fts(rowid, body) VALUES (new.seq, new.body);
END;
CREATE TRIGGER messages_fts_ad AFTER DELETE ON messages WHEN old.body IS NOT NULL BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, body) VALUES ('delete', old.seq, old.body);
END;
CREATE TRIGGER messages_fts_au AFTER UPDATE OF body ON messages BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, body)
        SELECT 'delete', old.seq, old.body WHERE old.body IS NOT NULL;
    INSERT INTO messages_fts(rowid, body)
        SELECT new.seq, new.body WHERE new.body IS NOT NULL;
END;
INSERT INTO messages_fts(messages_fts) VALUES ('rebuild');
`

func setupFullText(ctx context.Context, w *sql.DB) error {
	var n int
	err := w.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master
		WHERE type = 'trigger' AND name IN ('messages_fts_ai', 'messages_fts_ad', 'messages_fts_au')`).Scan(&n)
	if err != nil {
		return fmt.Errorf("inspect fts triggers: %w", err)
	}
	if n == 3 {
		return nil
	}
	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin fts setup: %w", err)
	}
	defer tx.Rollback()
	for _, t := range []string{"messages_fts_ai", "messages_fts_ad", "messages_fts_au"} {
		if _, err := tx.ExecContext(ctx, "DROP TRIGGER IF EXISTS "+t); err != nil {
			return fmt.Errorf("drop %s: %w", t, err)
		}
	}
	if _, err := tx.ExecContext(ctx, ftsSchema); err != nil {
		return fmt.Errorf("create fts index: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit fts setup: %w", err)
	}
	return nil
}

// fullTextClause returns an SQL condition on messages m matching every
// whitespace-separated term of text. Each term becomes an FTS5 string
// (double-quoted, inner quotes doubled), so operators, column filters,
// prefixes and NEAR() in user input are plain text. ok is false when text
// has no terms.
func fullTextClause(text string) (clause string, args []any, ok bool) {
	// FTS5 reads the query as a C string, so a NUL would cut it inside a
	// quoted term; XML (and so XMPP) cannot carry NUL anyway.
	terms := strings.Fields(strings.ReplaceAll(text, "\x00", ""))
	if len(terms) == 0 {
		return "", nil, false
	}
	q := make([]string, len(terms))
	for i, t := range terms {
		q[i] = `"` + strings.ReplaceAll(t, `"`, `""`) + `"`
	}
	return `m.seq IN (SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?)`,
		[]any{strings.Join(q, " AND ")}, true
}
