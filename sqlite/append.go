package sqlite

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"xmppbouncer/store"
)

// fallbackWindow is how far apart in time two copies of a message without
// stanza-id (but with an id or origin-id) may be stamped and still be taken
// for the same message. A live copy is stamped with local arrival time and a
// later history replay copy with the room's delay stamp (XEP-0203), so they
// differ by clock skew plus transit.
const fallbackWindow = 60 * time.Second

// Append archives m unless it is already there, and returns whether it was
// inserted. The row is committed when Append returns (WAL with
// synchronous=NORMAL: it survives a crash of the process; a power loss can
// lose the last transactions, never corrupt the file). m.Seq is set to the
// new row, or to the existing row when m was a duplicate.
//
// Duplicates are recognised as follows:
//   - with a StanzaID: same room and same stanza-id (XEP-0359 §3: the room
//     assigns unique, stable ids).
//   - without: same room, nick, id attribute (or origin-id if no id), and
//     body (XML when there is no body), hashed into a fallback key; when the
//     message carries an id or origin-id the stamps may differ by up to
//     fallbackWindow (live arrival vs delayed replay), otherwise they must
//     fall in the same UTC second.
//
// A zero Stamp is replaced by the current time.
func (db *DB) Append(ctx context.Context, m *store.Message) (bool, error) {
	n, err := db.AppendBatch(ctx, []*store.Message{m})
	return n == 1, err
}

// AppendBatch archives ms in one transaction, with Append's dedup rules
// (also among the messages of the batch), and returns how many were
// inserted. Each message's Seq is set. On error nothing is committed.
func (db *DB) AppendBatch(ctx context.Context, ms []*store.Message) (int, error) {
	if len(ms) == 0 {
		return 0, nil
	}
	for i, m := range ms {
		if m == nil || m.Room == "" {
			return 0, fmt.Errorf("sqlite: append: message %d has no room", i)
		}
	}
	start := time.Now()
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("sqlite: append: begin: %w", err)
	}
	defer tx.Rollback()
	created := make(map[string]int64)
	seqs := make([]int64, len(ms))
	newRow := make([]bool, len(ms))
	inserted := 0
	for i, m := range ms {
		roomID, err := db.roomIDTx(ctx, tx, m.Room, created)
		if err != nil {
			return 0, fmt.Errorf("sqlite: append: %w", err)
		}
		seq, ins, err := appendOne(ctx, tx, roomID, m)
		if err != nil {
			return 0, fmt.Errorf("sqlite: append to %s: %w", m.Room, err)
		}
		seqs[i] = seq
		newRow[i] = ins
		if ins {
			inserted++
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("sqlite: append: commit: %w", err)
	}
	db.observeCommit(time.Since(start), inserted)
	db.cacheRooms(created)
	for i, m := range ms {
		m.Seq = seqs[i]
		m.Inserted = newRow[i]
	}
	return inserted, nil
}

func appendOne(ctx context.Context, tx *sql.Tx, roomID int64, m *store.Message) (seq int64, inserted bool, err error) {
	stamp := m.Stamp
	if stamp.IsZero() {
		stamp = time.Now()
	}
	us := stamp.UnixMicro()
	var body any
	if m.Body != nil {
		body = *m.Body
	}

	if m.StanzaID != "" {
		res, err := tx.ExecContext(ctx, `INSERT INTO messages
			(room_id, stamp, stanza_id, origin_id, msg_id, nick, real_jid, body, xml)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (room_id, stanza_id) WHERE stanza_id IS NOT NULL DO NOTHING`,
			roomID, us, m.StanzaID, m.OriginID, m.ID, m.Nick, m.RealJID, body, m.XML)
		if err != nil {
			return 0, false, fmt.Errorf("insert: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return 0, false, fmt.Errorf("insert: %w", err)
		} else if n == 1 {
			seq, err = res.LastInsertId()
			if err != nil {
				return 0, false, fmt.Errorf("insert: %w", err)
			}
			return seq, true, nil
		}
		err = tx.QueryRowContext(ctx, `SELECT seq FROM messages WHERE room_id = ? AND stanza_id = ?`,
			roomID, m.StanzaID).Scan(&seq)
		if err != nil {
			return 0, false, fmt.Errorf("find duplicate stanza-id: %w", err)
		}
		return seq, false, nil
	}

	key := fallbackKey(m)
	lo, hi := us-fallbackWindow.Microseconds(), us+fallbackWindow.Microseconds()
	if m.ID == "" && m.OriginID == "" {
		sec := stamp.Unix() * 1e6
		lo, hi = sec, sec+999_999
	}
	err = tx.QueryRowContext(ctx, `SELECT seq FROM messages
		WHERE room_id = ? AND fkey = ? AND stamp BETWEEN ? AND ? LIMIT 1`,
		roomID, key, lo, hi).Scan(&seq)
	if err == nil {
		return seq, false, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return 0, false, fmt.Errorf("find duplicate: %w", err)
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO messages
		(room_id, stamp, fkey, origin_id, msg_id, nick, real_jid, body, xml)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		roomID, us, key, m.OriginID, m.ID, m.Nick, m.RealJID, body, m.XML)
	if err != nil {
		return 0, false, fmt.Errorf("insert: %w", err)
	}
	if seq, err = res.LastInsertId(); err != nil {
		return 0, false, fmt.Errorf("insert: %w", err)
	}
	return seq, true, nil
}

// fallbackKey hashes what identifies a message that has no stanza-id: the
// sender nick, its id (origin-id when it has no id attribute) and its body,
// or its whole XML when it has no body. Fields are length-prefixed so no two
// different tuples hash the same input.
func fallbackKey(m *store.Message) []byte {
	id := m.ID
	if id == "" {
		id = m.OriginID
	}
	content := m.XML
	tag := "x"
	if m.Body != nil {
		content, tag = *m.Body, "b"
	}
	h := sha256.New()
	for _, f := range []string{m.Nick, id, tag, content} {
		var n [8]byte
		l := uint64(len(f))
		for i := range n {
			n[i] = byte(l >> (8 * i))
		}
		h.Write(n[:])
		h.Write([]byte(f))
	}
	return h.Sum(nil)[:16]
}

// pruneBatch bounds how many rows one Prune transaction deletes, so the
// writer (and live archiving behind it) is never held for long.
const pruneBatch = 2000

// Prune deletes messages stamped before olderThan and returns how many it
// deleted. It works room by room in transactions of at most pruneBatch rows,
// so archiving goes on between them.
func (db *DB) Prune(ctx context.Context, olderThan time.Time) (int64, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT id FROM rooms ORDER BY id`)
	if err != nil {
		return 0, fmt.Errorf("sqlite: prune: list rooms: %w", err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, fmt.Errorf("sqlite: prune: list rooms: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("sqlite: prune: list rooms: %w", err)
	}
	cut := olderThan.UnixMicro()
	var total int64
	for _, id := range ids {
		for {
			res, err := db.w.ExecContext(ctx, `DELETE FROM messages WHERE seq IN
				(SELECT seq FROM messages WHERE room_id = ? AND stamp < ? ORDER BY stamp LIMIT ?)`,
				id, cut, pruneBatch)
			if err != nil {
				return total, fmt.Errorf("sqlite: prune: %w", err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return total, fmt.Errorf("sqlite: prune: %w", err)
			}
			total += n
			if n < pruneBatch {
				break
			}
		}
	}
	return total, nil
}
