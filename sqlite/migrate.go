package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration i (0-based) takes a database from user_version i to i+1.
type migration struct {
	version int
	name    string
	sql     string
}

// migrations is the ordered list read from migrations/NNNN_name.sql. A new
// schema change is a new file with the next number; files are never edited
// once released, since databases in the field already ran them.
var migrations = loadMigrations()

func loadMigrations() []migration {
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		panic(fmt.Sprintf("sqlite: embedded migrations: %v", err))
	}
	sort.Strings(names)
	var out []migration
	for i, n := range names {
		base := path.Base(n)
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v != i+1 {
			panic(fmt.Sprintf("sqlite: migration %s: want number %04d", base, i+1))
		}
		b, err := migrationFiles.ReadFile(n)
		if err != nil {
			panic(fmt.Sprintf("sqlite: migration %s: %v", base, err))
		}
		out = append(out, migration{version: v, name: base, sql: string(b)})
	}
	return out
}

// SchemaVersion is the user_version of a fully migrated database.
func SchemaVersion() int { return len(migrations) }

// migrate runs, each in its own transaction together with the user_version
// bump, every migration above the database's current version up to target.
func migrate(ctx context.Context, w *sql.DB, target int) error {
	var cur int
	if err := w.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&cur); err != nil {
		return fmt.Errorf("read user_version: %w", err)
	}
	if cur > len(migrations) {
		return fmt.Errorf("database schema version %d is newer than this program's %d", cur, len(migrations))
	}
	for _, m := range migrations[cur:target] {
		if err := runMigration(ctx, w, m); err != nil {
			return err
		}
	}
	return nil
}

func runMigration(ctx context.Context, w *sql.DB, m migration) error {
	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migration %s: begin: %w", m.name, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return fmt.Errorf("migration %s: %w", m.name, err)
	}
	// PRAGMA takes no bound parameters; the version is our own integer.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", m.version)); err != nil {
		return fmt.Errorf("migration %s: set user_version: %w", m.name, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migration %s: commit: %w", m.name, err)
	}
	return nil
}
