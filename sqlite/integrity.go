package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"

	sqlite3 "github.com/mattn/go-sqlite3"
)

// ErrCorrupt is wrapped by every error that says the database file is
// damaged: PRAGMA quick_check found problems, or SQLite refused the file.
var ErrCorrupt = errors.New("the database file is damaged")

// CorruptError lists what PRAGMA quick_check (or SQLite itself) found
// wrong with the file at Path.
type CorruptError struct {
	Path     string
	Problems []string // as SQLite words them, at most maxProblems
}

const maxProblems = 20

func (e *CorruptError) Error() string {
	first := ""
	if len(e.Problems) > 0 {
		first = ": " + e.Problems[0]
		if n := len(e.Problems) - 1; n > 0 {
			first += fmt.Sprintf(" (and %d more)", n)
		}
	}
	return fmt.Sprintf("%s: the database file is damaged%s", e.Path, first)
}

func (e *CorruptError) Unwrap() error { return ErrCorrupt }

// RecoveryHint says how to get the data back from a damaged file at path.
func RecoveryHint(path string) string {
	return fmt.Sprintf("the file was left as it is; recover what is readable with "+
		"`sqlite3 %[1]s .recover | sqlite3 %[1]s.recovered` and move %[1]s.recovered to %[1]s "+
		"(keep the damaged file aside), or restore %[1]s from a backup", path)
}

// quickCheck runs PRAGMA quick_check on conn: a full scan of every page and
// b-tree (minus the index-content cross-check of integrity_check), in time
// linear in the file size.
func quickCheck(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, path string) error {
	rows, err := q.QueryContext(ctx, fmt.Sprintf(`PRAGMA quick_check(%d)`, maxProblems))
	if err != nil {
		return corruptOr(path, err)
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return corruptOr(path, err)
		}
		for _, line := range strings.Split(s, "\n") {
			line = strings.TrimSpace(line)
			if line != "ok" && line != "" && !strings.HasPrefix(line, "*** in database") {
				problems = append(problems, line)
			}
		}
	}
	if err := rows.Err(); err != nil {
		// SQLite stops the check with "malformed" after listing what it
		// found: keep both.
		if ce, ok := corruptOr(path, err).(*CorruptError); ok {
			ce.Problems = append(problems, ce.Problems...)
			return ce
		}
		return err
	}
	if len(problems) > 0 {
		return &CorruptError{Path: path, Problems: problems}
	}
	return nil
}

// corruptOr turns SQLite's own "malformed" and "not a database" errors
// into a CorruptError, and leaves every other error as it is.
func corruptOr(path string, err error) error {
	var se sqlite3.Error
	if errors.As(err, &se) && (se.Code == sqlite3.ErrCorrupt || se.Code == sqlite3.ErrNotADB) {
		return &CorruptError{Path: path, Problems: []string{se.Error()}}
	}
	return err
}

// Check opens the database at path read-only, without creating or
// migrating anything, and runs PRAGMA quick_check on it. It returns nil when
// the file is sound, a *CorruptError when it is damaged, and another error
// when it cannot be read at all.
func Check(ctx context.Context, path string) error {
	registerDriver()
	u := "file:" + (&url.URL{Path: path}).EscapedPath() + "?mode=ro&_busy_timeout=10000"
	db, err := sql.Open(driverName, u)
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if err := db.PingContext(ctx); err != nil {
		return corruptOr(path, err)
	}
	return quickCheck(ctx, db, path)
}
