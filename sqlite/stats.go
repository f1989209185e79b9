package sqlite

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	sqlite3 "github.com/mattn/go-sqlite3"
)

// CommitObserver is told the duration of each archive transaction
// (begin to commit) and how many messages it inserted.
type CommitObserver func(d time.Duration, inserted int)

type dbStats struct {
	observer atomic.Pointer[CommitObserver]
	inserts  atomic.Uint64
	commits  atomic.Uint64
}

// SetCommitObserver installs f (nil removes it); metrics use it for the
// commit latency histogram.
func (db *DB) SetCommitObserver(f CommitObserver) {
	if f == nil {
		db.stats.observer.Store(nil)
		return
	}
	db.stats.observer.Store(&f)
}

func (db *DB) observeCommit(d time.Duration, inserted int) {
	db.stats.inserts.Add(uint64(inserted))
	db.stats.commits.Add(1)
	if f := db.stats.observer.Load(); f != nil {
		(*f)(d, inserted)
	}
}

// Inserted is how many messages this DB has archived since it was opened
// (duplicates not counted).
func (db *DB) Inserted() uint64 { return db.stats.inserts.Load() }

// Size is the archive's size: the messages it holds, and the bytes of the
// database file's pages (the WAL not included). Both are cheap: counts are
// kept per room by triggers.
func (db *DB) Size(ctx context.Context) (messages, bytes int64, err error) {
	if err := db.r.QueryRowContext(ctx, `SELECT coalesce(sum(msg_count), 0) FROM rooms`).Scan(&messages); err != nil {
		return 0, 0, fmt.Errorf("sqlite: archive size: %w", err)
	}
	var pages, pageSize int64
	if err := db.r.QueryRowContext(ctx, `PRAGMA page_count`).Scan(&pages); err != nil {
		return 0, 0, fmt.Errorf("sqlite: archive size: %w", err)
	}
	if err := db.r.QueryRowContext(ctx, `PRAGMA page_size`).Scan(&pageSize); err != nil {
		return 0, 0, fmt.Errorf("sqlite: archive size: %w", err)
	}
	return messages, pages * pageSize, nil
}

// Version is the SQLite library's version, e.g. "3.46.1".
func Version() string {
	v, _, _ := sqlite3.Version()
	return v
}
