//go:build !sqlite_fts5

package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// FullTextFTS5 reports whether this build searches with FTS5 (whole-word,
// case- and diacritic-insensitive) rather than the LIKE substring fallback.
const FullTextFTS5 = false

// setupFullText drops the FTS5 sync triggers an FTS5 build may have left:
// without the fts5 module compiled in, any insert firing them would fail.
// The FTS5 build rebuilds its index when it finds them missing.
func setupFullText(ctx context.Context, w *sql.DB) error {
	for _, t := range []string{"messages_fts_ai", "messages_fts_ad", "messages_fts_au"} {
		if _, err := w.ExecContext(ctx, "DROP TRIGGER IF EXISTS "+t); err != nil {
			return fmt.Errorf("drop %s: %w", t, err)
		}
	}
	return nil
}

var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

// fullTextFilter turns text into a condition on messages m requiring every
// whitespace-separated term as a substring of the body (ASCII
// case-insensitive, SQLite LIKE), with LIKE wildcards in the input escaped.
// It returns nil when text has no terms. This scans the room.
func (db *DB) fullTextFilter(_ context.Context, _ querier, _ int64, text string) (*textFilter, error) {
	terms := strings.Fields(text)
	if len(terms) == 0 {
		return nil, nil
	}
	f := &textFilter{count: -1}
	conds := make([]string, len(terms))
	for i, t := range terms {
		conds[i] = `m.body LIKE ? ESCAPE '\'`
		f.args = append(f.args, "%"+likeEscaper.Replace(t)+"%")
	}
	f.clause = "(" + strings.Join(conds, " AND ") + ")"
	return f, nil
}
