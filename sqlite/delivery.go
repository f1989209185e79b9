package sqlite

import (
	"context"
	"fmt"
	"time"

	"xmppbouncer/store"
)

// StoreOffline commits offline messages in one transaction, in order, and
// returns how many it stored, setting their Seq. limit > 0 bounds the
// store: once it holds limit messages the rest are not stored (the caller
// refuses them).
func (db *DB) StoreOffline(ctx context.Context, ms []store.Offline, limit int) (int, error) {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("sqlite: store offline: begin: %w", err)
	}
	defer tx.Rollback()
	room := len(ms)
	if limit > 0 {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM offline`).Scan(&n); err != nil {
			return 0, fmt.Errorf("sqlite: store offline: count: %w", err)
		}
		room = min(room, max(0, limit-n))
	}
	for i := range ms[:room] {
		res, err := tx.ExecContext(ctx, `INSERT INTO offline(stamp, xml) VALUES (?, ?)`, ms[i].Stamp.UnixMicro(), ms[i].XML)
		if err != nil {
			return 0, fmt.Errorf("sqlite: store offline: %w", err)
		}
		if ms[i].Seq, err = res.LastInsertId(); err != nil {
			return 0, fmt.Errorf("sqlite: store offline: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("sqlite: store offline: commit: %w", err)
	}
	return room, nil
}

// OfflineMessages returns every stored offline message, oldest first.
func (db *DB) OfflineMessages(ctx context.Context) ([]store.Offline, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT seq, stamp, xml FROM offline ORDER BY seq`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: offline messages: %w", err)
	}
	defer rows.Close()
	var out []store.Offline
	for rows.Next() {
		var o store.Offline
		var us int64
		if err := rows.Scan(&o.Seq, &us, &o.XML); err != nil {
			return nil, fmt.Errorf("sqlite: offline messages: %w", err)
		}
		o.Stamp = time.UnixMicro(us).UTC()
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: offline messages: %w", err)
	}
	return out, nil
}

// DeleteOffline deletes the offline messages up to and including seq: they
// were delivered, in order.
func (db *DB) DeleteOffline(ctx context.Context, seq int64) error {
	if _, err := db.w.ExecContext(ctx, `DELETE FROM offline WHERE seq <= ?`, seq); err != nil {
		return fmt.Errorf("sqlite: delete offline up to %d: %w", seq, err)
	}
	return nil
}

// PruneOffline deletes offline messages stored before olderThan and
// returns how many.
func (db *DB) PruneOffline(ctx context.Context, olderThan time.Time) (int64, error) {
	res, err := db.w.ExecContext(ctx, `DELETE FROM offline WHERE stamp < ?`, olderThan.UnixMicro())
	if err != nil {
		return 0, fmt.Errorf("sqlite: prune offline: %w", err)
	}
	return res.RowsAffected()
}

// OfflineCount is how many offline messages are stored.
func (db *DB) OfflineCount(ctx context.Context) (int, error) {
	var n int
	if err := db.r.QueryRowContext(ctx, `SELECT count(*) FROM offline`).Scan(&n); err != nil {
		return 0, fmt.Errorf("sqlite: count offline: %w", err)
	}
	return n, nil
}

// Cursors returns every stored cursor.
func (db *DB) Cursors(ctx context.Context) ([]store.Cursor, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT room, resource, seq, updated FROM cursors`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: cursors: %w", err)
	}
	defer rows.Close()
	var out []store.Cursor
	for rows.Next() {
		var c store.Cursor
		var updated int64
		if err := rows.Scan(&c.Room, &c.Resource, &c.Seq, &updated); err != nil {
			return nil, fmt.Errorf("sqlite: cursors: %w", err)
		}
		c.Updated = time.Unix(updated, 0).UTC()
		out = append(out, c)
	}
	return out, rows.Err()
}

// SaveCursors stores cursors in one transaction. A cursor only moves
// forward, so saves that overtake each other cannot move one back.
func (db *DB) SaveCursors(ctx context.Context, cs []store.Cursor) error {
	if len(cs) == 0 {
		return nil
	}
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: save cursors: begin: %w", err)
	}
	defer tx.Rollback()
	for _, c := range cs {
		if _, err := tx.ExecContext(ctx, `INSERT INTO cursors(room, resource, seq, updated) VALUES (?, ?, ?, ?)
			ON CONFLICT (room, resource) DO UPDATE SET seq = max(seq, excluded.seq), updated = max(updated, excluded.updated)`,
			c.Room, c.Resource, c.Seq, c.Updated.Unix()); err != nil {
			return fmt.Errorf("sqlite: save cursor %s %s: %w", c.Room, c.Resource, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: save cursors: commit: %w", err)
	}
	return nil
}

// PruneCursors deletes the cursors that have not moved since olderThan
// and returns how many.
func (db *DB) PruneCursors(ctx context.Context, olderThan time.Time) (int64, error) {
	res, err := db.w.ExecContext(ctx, `DELETE FROM cursors WHERE updated < ?`, olderThan.Unix())
	if err != nil {
		return 0, fmt.Errorf("sqlite: prune cursors: %w", err)
	}
	return res.RowsAffected()
}

// After returns the room's messages archived after seq (in archive order,
// which is arrival order), keeping the newest max of them and none stamped
// before notBefore (zero: no age limit).
func (db *DB) After(ctx context.Context, room string, seq int64, max int, notBefore time.Time) ([]*store.Message, error) {
	if max <= 0 {
		return nil, nil
	}
	id, ok, err := db.roomID(ctx, room)
	if err != nil || !ok {
		return nil, err
	}
	from := int64(-1 << 63)
	if !notBefore.IsZero() {
		from = notBefore.UnixMicro()
	}
	rows, err := db.r.QueryContext(ctx, `SELECT `+msgColumns+` FROM messages m JOIN rooms r ON r.id = m.room_id
		WHERE m.room_id = ? AND m.seq > ? AND m.stamp >= ? ORDER BY m.seq DESC LIMIT ?`, id, seq, from, max)
	if err != nil {
		return nil, fmt.Errorf("sqlite: messages of %s after %d: %w", room, seq, err)
	}
	defer rows.Close()
	var out []*store.Message
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: messages of %s after %d: %w", room, seq, err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: messages of %s after %d: %w", room, seq, err)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}
