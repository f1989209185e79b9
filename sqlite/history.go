package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"time"

	"xmppbouncer/store"
)

// msgColumns is the column list scanMessage expects, for messages m joined
// to rooms r.
const msgColumns = `m.seq, r.jid, m.stamp, m.stanza_id, m.origin_id, m.msg_id, m.nick, m.real_jid, m.body, m.xml`

type scanner interface{ Scan(dest ...any) error }

func scanMessage(s scanner) (*store.Message, error) {
	var (
		m        store.Message
		us       int64
		stanzaID sql.NullString
		body     sql.NullString
	)
	if err := s.Scan(&m.Seq, &m.Room, &us, &stanzaID, &m.OriginID, &m.ID, &m.Nick, &m.RealJID, &body, &m.XML); err != nil {
		return nil, err
	}
	m.Stamp = time.UnixMicro(us).UTC()
	m.StanzaID = stanzaID.String
	if body.Valid {
		b := body.String
		m.Body = &b
	}
	return &m, nil
}

// Last returns the room's newest message (by Stamp, then Seq), or nil when
// the room has none.
func (db *DB) Last(ctx context.Context, room string) (*store.Message, error) {
	id, ok, err := db.roomID(ctx, room)
	if err != nil || !ok {
		return nil, err
	}
	row := db.r.QueryRowContext(ctx, `SELECT `+msgColumns+` FROM messages m JOIN rooms r ON r.id = m.room_id
		WHERE m.room_id = ? ORDER BY m.stamp DESC, m.seq DESC LIMIT 1`, id)
	m, err := scanMessage(row)
	if err == sql.ErrNoRows {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: last message of %s: %w", room, err)
	}
	return m, nil
}

// History returns the messages to replay to a joining occupant, oldest
// first. Every limit that is set applies, so the most restrictive wins:
// MaxStanzas caps the count (defaultMax caps it when MaxStanzas is unset,
// so a bare since/seconds request cannot replay the whole archive);
// MaxChars keeps the newest messages whose XML lengths sum to at most
// MaxChars; Seconds and Since keep messages stamped at or after now-Seconds
// and strictly after Since. MaxStanzas==0 or MaxChars==0 return nothing, as
// does defaultMax<=0 with MaxStanzas unset.
func (db *DB) History(ctx context.Context, room string, lim store.HistoryLimit, defaultMax int) ([]*store.Message, error) {
	limit := lim.MaxStanzas
	if limit < 0 {
		limit = defaultMax
	}
	if limit <= 0 || lim.MaxChars == 0 {
		return nil, nil
	}
	id, ok, err := db.roomID(ctx, room)
	if err != nil || !ok {
		return nil, err
	}
	from := int64(-1 << 63)
	if !lim.Since.IsZero() {
		// XEP-0045 §7.2.14: messages sent "since" the given instant, so
		// strictly after it.
		from = lim.Since.UnixMicro() + 1
	}
	if lim.Seconds >= 0 {
		from = max(from, time.Now().Add(-time.Duration(lim.Seconds)*time.Second).UnixMicro())
	}
	rows, err := db.r.QueryContext(ctx, `SELECT `+msgColumns+` FROM messages m JOIN rooms r ON r.id = m.room_id
		WHERE m.room_id = ? AND m.stamp >= ? ORDER BY m.stamp DESC, m.seq DESC LIMIT ?`, id, from, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: history of %s: %w", room, err)
	}
	defer rows.Close()
	var out []*store.Message
	chars := 0
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: history of %s: %w", room, err)
		}
		if lim.MaxChars > 0 {
			chars += len(m.XML)
			if chars > lim.MaxChars {
				break
			}
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: history of %s: %w", room, err)
	}
	slices.Reverse(out)
	return out, nil
}
