package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"xmppbouncer/store"
)

// UpstreamSM returns the persisted upstream session, if any.
func (db *DB) UpstreamSM(ctx context.Context) (store.UpstreamSM, bool, error) {
	var s store.UpstreamSM
	var h int64
	err := db.w.QueryRowContext(ctx, `SELECT id, bound, h FROM upstream_sm WHERE one = 1`).Scan(&s.ID, &s.Bound, &h)
	if errors.Is(err, sql.ErrNoRows) {
		return s, false, nil
	}
	if err != nil {
		return s, false, fmt.Errorf("sqlite: upstream sm: %w", err)
	}
	s.H = uint32(h)
	return s, s.ID != "", nil
}

// SetUpstreamSM replaces the persisted upstream session (an empty ID
// forgets it).
func (db *DB) SetUpstreamSM(ctx context.Context, s store.UpstreamSM) error {
	_, err := db.w.ExecContext(ctx, `INSERT INTO upstream_sm(one, id, bound, h, updated) VALUES (1, ?, ?, ?, ?)
		ON CONFLICT(one) DO UPDATE SET id = excluded.id, bound = excluded.bound, h = excluded.h, updated = excluded.updated`,
		s.ID, s.Bound, int64(s.H), time.Now().Unix())
	if err != nil {
		return fmt.Errorf("sqlite: set upstream sm: %w", err)
	}
	return nil
}

// SetUpstreamH records h for the session id; it does nothing when another
// session has been persisted since.
func (db *DB) SetUpstreamH(ctx context.Context, id string, h uint32) error {
	_, err := db.w.ExecContext(ctx, `UPDATE upstream_sm SET h = ?, updated = ? WHERE one = 1 AND id = ?`, int64(h), time.Now().Unix(), id)
	if err != nil {
		return fmt.Errorf("sqlite: set upstream h: %w", err)
	}
	return nil
}

// StoreChats commits chats in one transaction, in order, setting Seq and
// Inserted. A chat whose SID is already queued is not stored again (its
// Seq is the existing row's).
func (db *DB) StoreChats(ctx context.Context, cs []*store.Chat) error {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: store chats: begin: %w", err)
	}
	defer tx.Rollback()
	for _, c := range cs {
		var sid any
		if c.SID != "" {
			sid = c.SID
		}
		res, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO chats(sid, stamp, rcpt, xml) VALUES (?, ?, ?, ?)`, sid, c.Stamp.UnixMicro(), strings.Join(c.Rcpt, "\n"), c.XML)
		if err != nil {
			return fmt.Errorf("sqlite: store chats: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("sqlite: store chats: %w", err)
		}
		c.Inserted = n == 1
		if c.Inserted {
			if c.Seq, err = res.LastInsertId(); err != nil {
				return fmt.Errorf("sqlite: store chats: %w", err)
			}
		} else if err := tx.QueryRowContext(ctx, `SELECT seq FROM chats WHERE sid = ?`, c.SID).Scan(&c.Seq); err != nil {
			return fmt.Errorf("sqlite: store chats: existing: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: store chats: commit: %w", err)
	}
	return nil
}

// ChatsFor returns, oldest first, up to max queued chats with after < seq
// <= upTo that were for resource.
func (db *DB) ChatsFor(ctx context.Context, resource string, after, upTo int64, max int) ([]store.Chat, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT seq, COALESCE(sid, ''), stamp, rcpt, xml FROM chats
		WHERE seq > ? AND seq <= ? AND instr(char(10) || rcpt || char(10), char(10) || ? || char(10)) > 0
		ORDER BY seq LIMIT ?`, after, upTo, resource, max)
	seq := after
	if err != nil {
		return nil, fmt.Errorf("sqlite: chats after %d: %w", seq, err)
	}
	defer rows.Close()
	var out []store.Chat
	for rows.Next() {
		var c store.Chat
		var us int64
		var rcpt string
		if err := rows.Scan(&c.Seq, &c.SID, &us, &rcpt, &c.XML); err != nil {
			return nil, fmt.Errorf("sqlite: chats after %d: %w", seq, err)
		}
		c.Stamp = time.UnixMicro(us).UTC()
		if rcpt != "" {
			c.Rcpt = strings.Split(rcpt, "\n")
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// LastChat returns the newest queued chat's seq (0 when empty).
func (db *DB) LastChat(ctx context.Context) (int64, error) {
	var seq sql.NullInt64
	if err := db.r.QueryRowContext(ctx, `SELECT max(seq) FROM chats`).Scan(&seq); err != nil {
		return 0, fmt.Errorf("sqlite: last chat: %w", err)
	}
	return seq.Int64, nil
}

// DeleteChats deletes the queued chats up to and including upTo stamped
// before before, and every one stamped before olderThan. It returns how
// many it deleted.
func (db *DB) DeleteChats(ctx context.Context, upTo int64, before, olderThan time.Time) (int64, error) {
	res, err := db.w.ExecContext(ctx, `DELETE FROM chats WHERE (seq <= ? AND stamp < ?) OR stamp < ?`, upTo, before.UnixMicro(), olderThan.UnixMicro())
	if err != nil {
		return 0, fmt.Errorf("sqlite: delete chats: %w", err)
	}
	return res.RowsAffected()
}

// SaveResumable records a session's id, resource, h and expiry, keeping
// what the core stored with it.
func (db *DB) SaveResumable(ctx context.Context, r store.Resumable) error {
	_, err := db.w.ExecContext(ctx, `INSERT INTO resumable(id, resource, in_h, expires) VALUES (?, ?, ?, ?)
		ON CONFLICT(id) DO UPDATE SET resource = excluded.resource, in_h = excluded.in_h, expires = excluded.expires`,
		r.ID, r.Resource, int64(r.InH), r.Expires.Unix())
	if err != nil {
		return fmt.Errorf("sqlite: save resumable: %w", err)
	}
	return nil
}

// SetResumableState stores the core's part of a session.
func (db *DB) SetResumableState(ctx context.Context, id, presence, rooms string) error {
	if _, err := db.w.ExecContext(ctx, `UPDATE resumable SET presence = ?, rooms = ? WHERE id = ?`, presence, rooms, id); err != nil {
		return fmt.Errorf("sqlite: resumable state: %w", err)
	}
	return nil
}

// Resumable returns the session id unless it is unknown or expired.
func (db *DB) Resumable(ctx context.Context, id string, now time.Time) (store.Resumable, bool, error) {
	var r store.Resumable
	var h, exp int64
	err := db.r.QueryRowContext(ctx, `SELECT id, resource, in_h, expires, presence, rooms FROM resumable WHERE id = ? AND expires > ?`, id, now.Unix()).
		Scan(&r.ID, &r.Resource, &h, &exp, &r.Presence, &r.Rooms)
	if errors.Is(err, sql.ErrNoRows) {
		return r, false, nil
	}
	if err != nil {
		return r, false, fmt.Errorf("sqlite: resumable: %w", err)
	}
	r.InH, r.Expires = uint32(h), time.Unix(exp, 0)
	return r, true, nil
}

// DeleteResumable forgets a session, and every expired one.
func (db *DB) DeleteResumable(ctx context.Context, id string, now time.Time) error {
	if _, err := db.w.ExecContext(ctx, `DELETE FROM resumable WHERE id = ? OR expires <= ?`, id, now.Unix()); err != nil {
		return fmt.Errorf("sqlite: delete resumable: %w", err)
	}
	return nil
}

// LastChatSID returns the stanza-id and stamp of the newest queued chat
// that has one ("" when none).
func (db *DB) LastChatSID(ctx context.Context) (string, time.Time, error) {
	var sid string
	var us int64
	err := db.r.QueryRowContext(ctx, `SELECT sid, stamp FROM chats WHERE sid IS NOT NULL ORDER BY seq DESC LIMIT 1`).Scan(&sid, &us)
	if errors.Is(err, sql.ErrNoRows) {
		return "", time.Time{}, nil
	}
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sqlite: last chat sid: %w", err)
	}
	return sid, time.UnixMicro(us), nil
}
