// Package sqlite is xmppbouncer's durable store: the archive of the MUC rooms
// the account occupies (join history replay, XEP-0045 §7.2.14, and MAM,
// XEP-0313 with RSM, XEP-0059) and a small key/value state table.
//
// One SQLite file in WAL mode is shared by a single writer connection (every
// write is serialised through it, so there is never a SQLITE_BUSY between our
// own writers) and a small pool of read-only connections that WAL lets run
// beside the writer. Full-text search uses FTS5 when built with the
// sqlite_fts5 tag and a LIKE scan otherwise.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"

	sqlite3 "github.com/mattn/go-sqlite3"
)

// driverName is the database/sql driver registered by this package: the
// stock go-sqlite3 driver plus per-connection pragmas that have no DSN knob.
const driverName = "xmppbouncer-sqlite3"

var registerOnce sync.Once

func registerDriver() {
	registerOnce.Do(func() {
		sql.Register(driverName, &sqlite3.SQLiteDriver{
			ConnectHook: func(c *sqlite3.SQLiteConn) error {
				// Memory-mapped reads avoid a copy per page on the
				// read-heavy MAM path; temp b-trees (ORDER BY, IN lists)
				// stay off disk. No connection checkpoints when it
				// commits: a checkpoint fsyncs the main file, which can
				// take 100 ms, and the archive's commits must stay fast.
				// The checkpointer goroutine does it instead (checkpoint.go).
				_, err := c.Exec(`PRAGMA mmap_size = 1073741824; PRAGMA temp_store = MEMORY;
					PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 67108864`, nil)
				return err
			},
		})
	})
}

// readPoolSize bounds concurrent readers; WAL readers never block the
// writer, so this is only about memory per connection.
const readPoolSize = 4

// DB is the archive and state store. Its methods are safe for concurrent use.
type DB struct {
	w *sql.DB // exactly one connection: every write goes through it
	r *sql.DB // read-only pool

	mu    sync.RWMutex
	rooms map[string]int64 // room JID -> rooms.id, filled lazily

	stats dbStats // commit observer and counters, for metrics (stats.go)
	ck    checkpointer
}

// Open opens (creating if needed) the database file at path and brings its
// schema up to date. path must be a file name: ":memory:" cannot be shared
// between the writer and the reader pool.
func Open(ctx context.Context, path string) (*DB, error) {
	if path == "" || path == ":memory:" {
		return nil, fmt.Errorf("sqlite: open %q: a file path is required", path)
	}
	registerDriver()
	if err := privateFiles(path); err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, ExplainFSError(err))
	}
	if err := writableDir(path); err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	// Escaped so that "?" or "#" in a file name cannot be read as URI syntax.
	u := "file:" + (&url.URL{Path: path}).EscapedPath()
	common := "&_busy_timeout=10000&_foreign_keys=1&_synchronous=NORMAL&_stmt_cache_size=64"

	w, err := sql.Open(driverName, u+"?_journal_mode=WAL&_txlock=immediate&_cache_size=-32000"+common)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open writer %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)

	db := &DB{w: w, rooms: make(map[string]int64)}
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open writer %s: %w", path, corruptOr(path, err))
	}
	// A damaged page is refused here rather than found later by a replay
	// or a MAM query (PRAGMA quick_check reads every page once).
	if err := quickCheck(ctx, w, path); err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: check %s: %w", path, err)
	}
	if err := migrate(ctx, w, len(migrations)); err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: migrate %s: %w", path, err)
	}
	if err := setupFullText(ctx, w); err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: full-text setup %s: %w", path, err)
	}

	// The readers open after the writer has switched the file to WAL
	// (persistent), so they never try to change the journal mode.
	r, err := sql.Open(driverName, u+"?_query_only=1&_cache_size=-16000"+common)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open readers %s: %w", path, err)
	}
	r.SetMaxOpenConns(readPoolSize)
	r.SetMaxIdleConns(readPoolSize)
	r.SetConnMaxIdleTime(0)
	if err := r.PingContext(ctx); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("sqlite: open readers %s: %w", path, err)
	}
	db.r = r
	db.startCheckpointer(u + "?_busy_timeout=1000&_synchronous=NORMAL")
	return db, nil
}

// Close closes the reader pool and then the writer. The writer's close
// checkpoints the WAL back into the main file.
func (db *DB) Close() error {
	db.stopCheckpointer()
	return errors.Join(db.r.Close(), db.w.Close())
}

// GetState returns the value stored under key and whether it exists.
func (db *DB) GetState(ctx context.Context, key string) (string, bool, error) {
	var v string
	err := db.r.QueryRowContext(ctx, `SELECT value FROM state WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("sqlite: get state %q: %w", key, err)
	}
	return v, true, nil
}

// SetState stores value under key, replacing any previous value; it is
// committed when SetState returns.
func (db *DB) SetState(ctx context.Context, key, value string) error {
	_, err := db.w.ExecContext(ctx,
		`INSERT INTO state(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`,
		key, value)
	if err != nil {
		return fmt.Errorf("sqlite: set state %q: %w", key, err)
	}
	return nil
}

// DeleteState removes key; a missing key is not an error.
func (db *DB) DeleteState(ctx context.Context, key string) error {
	if _, err := db.w.ExecContext(ctx, `DELETE FROM state WHERE key = ?`, key); err != nil {
		return fmt.Errorf("sqlite: delete state %q: %w", key, err)
	}
	return nil
}

// Rooms returns the JIDs of the rooms that have at least one archived
// message, sorted.
func (db *DB) Rooms(ctx context.Context) ([]string, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT jid FROM rooms r
		WHERE EXISTS (SELECT 1 FROM messages m WHERE m.room_id = r.id) ORDER BY jid`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list rooms: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var j string
		if err := rows.Scan(&j); err != nil {
			return nil, fmt.Errorf("sqlite: list rooms: %w", err)
		}
		out = append(out, j)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list rooms: %w", err)
	}
	return out, nil
}

// roomID returns the id of room for reading, or ok=false when the room has
// never been archived.
func (db *DB) roomID(ctx context.Context, room string) (id int64, ok bool, err error) {
	db.mu.RLock()
	id, ok = db.rooms[room]
	db.mu.RUnlock()
	if ok {
		return id, true, nil
	}
	err = db.r.QueryRowContext(ctx, `SELECT id FROM rooms WHERE jid = ?`, room).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("sqlite: look up room %q: %w", room, err)
	}
	db.mu.Lock()
	db.rooms[room] = id
	db.mu.Unlock()
	return id, true, nil
}

// roomIDTx returns the id of room inside a write transaction, creating the
// row if needed. Newly created ids are reported through created so that
// they are cached only once the transaction commits.
func (db *DB) roomIDTx(ctx context.Context, tx *sql.Tx, room string, created map[string]int64) (int64, error) {
	if id, ok := created[room]; ok {
		return id, nil
	}
	db.mu.RLock()
	id, ok := db.rooms[room]
	db.mu.RUnlock()
	if ok {
		return id, nil
	}
	err := tx.QueryRowContext(ctx, `SELECT id FROM rooms WHERE jid = ?`, room).Scan(&id)
	if err == nil {
		created[room] = id
		return id, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("look up room %q: %w", room, err)
	}
	if err := tx.QueryRowContext(ctx, `INSERT INTO rooms(jid) VALUES(?) RETURNING id`, room).Scan(&id); err != nil {
		return 0, fmt.Errorf("create room %q: %w", room, err)
	}
	created[room] = id
	return id, nil
}

func (db *DB) cacheRooms(created map[string]int64) {
	if len(created) == 0 {
		return
	}
	db.mu.Lock()
	for k, v := range created {
		db.rooms[k] = v
	}
	db.mu.Unlock()
}

// privateFiles makes the archive readable by its owner only: the data
// directory is created 0700, the database is created 0600 before SQLite
// opens it (SQLite gives -wal and -shm the database's mode), and files
// left more open by an older version are tightened.
func privateFiles(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case err == nil:
		return f.Close()
	case !errors.Is(err, os.ErrExist):
		return err
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		st, err := os.Stat(p)
		if err != nil || st.Mode().Perm()&0o077 == 0 {
			continue
		}
		if err := os.Chmod(p, st.Mode().Perm()&0o700); err != nil {
			return err
		}
	}
	return nil
}
