package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"xmppbouncer/store"
)

// textFilter is a full-text condition on messages m. count is the number of
// matches in the room when known cheaply (else -1); drive says whether
// queries should start from the matches rather than from the room index.
type textFilter struct {
	clause string
	args   []any
	count  int
	drive  bool
}

// querier is what the read paths need from a *sql.DB or *sql.Tx.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// position is a message's place in archive order.
type position struct{ stamp, seq int64 }

// resolveID finds the archive id in the room. Room-assigned stanza-ids win
// over the synthetic "xb-<seq>" form, which only names rows without one.
func resolveID(ctx context.Context, qr querier, roomID int64, id string) (position, error) {
	var p position
	err := qr.QueryRowContext(ctx, `SELECT stamp, seq FROM messages WHERE room_id = ? AND stanza_id = ?`,
		roomID, id).Scan(&p.stamp, &p.seq)
	if err == nil {
		return p, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return p, fmt.Errorf("sqlite: look up archive id %q: %w", id, err)
	}
	if seq, ok := store.SyntheticSeq(id); ok {
		err = qr.QueryRowContext(ctx, `SELECT stamp, seq FROM messages
			WHERE seq = ? AND room_id = ? AND stanza_id IS NULL`, seq, roomID).Scan(&p.stamp, &p.seq)
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return p, fmt.Errorf("sqlite: look up archive id %q: %w", id, err)
		}
	}
	return p, fmt.Errorf("%w: %q", store.ErrItemNotFound, id)
}

// ceilMicro and floorMicro convert a time to the stored microsecond stamps
// so that inclusive bounds stay exact for sub-microsecond inputs.
func ceilMicro(t time.Time) int64 {
	us := t.UnixMicro()
	if time.UnixMicro(us).Before(t) {
		us++
	}
	return us
}

func floorMicro(t time.Time) int64 {
	us := t.UnixMicro()
	if time.UnixMicro(us).After(t) {
		us--
	}
	return us
}

// Query runs a MAM query against q.Room's archive.
func (db *DB) Query(ctx context.Context, q store.Query) (*store.Page, error) {
	roomID, ok, err := db.roomID(ctx, q.Room)
	if err != nil {
		return nil, err
	}
	if !ok {
		if q.AfterID != "" || q.BeforeID != "" || len(q.IDs) > 0 || q.After != "" || (q.BeforeSet && q.Before != "") {
			return nil, store.ErrItemNotFound
		}
		return &store.Page{Complete: true}, nil
	}

	// One read transaction, so the count, the cursors and the page all see
	// the same snapshot of the archive.
	tx, err := db.r.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("sqlite: query archive of %s: %w", q.Room, err)
	}
	defer tx.Rollback()

	// RSM paging cursor (XEP-0059 §2.2, §2.3), resolved first so that an
	// unknown id is reported even for a count-only query.
	backward := q.BeforeSet
	cursorID := q.After
	if backward {
		cursorID = q.Before
	}
	var cursor *position
	if cursorID != "" {
		p, err := resolveID(ctx, tx, roomID, cursorID)
		if err != nil {
			return nil, err
		}
		cursor = &p
	}

	// Filters other than the room and the full-text search.
	var where []string
	var args []any
	if !q.Start.IsZero() {
		where = append(where, "m.stamp >= ?")
		args = append(args, ceilMicro(q.Start))
	}
	if !q.End.IsZero() {
		where = append(where, "m.stamp <= ?")
		args = append(args, floorMicro(q.End))
	}
	if q.With != "" {
		if c, a, ok := withClause(q.Room, q.With); ok {
			where = append(where, c)
			args = append(args, a)
		}
	}
	if q.AfterID != "" {
		p, err := resolveID(ctx, tx, roomID, q.AfterID)
		if err != nil {
			return nil, err
		}
		where = append(where, "(m.stamp, m.seq) > (?, ?)")
		args = append(args, p.stamp, p.seq)
	}
	if q.BeforeID != "" {
		p, err := resolveID(ctx, tx, roomID, q.BeforeID)
		if err != nil {
			return nil, err
		}
		where = append(where, "(m.stamp, m.seq) < (?, ?)")
		args = append(args, p.stamp, p.seq)
	}
	if len(q.IDs) > 0 {
		seqs := make([]string, 0, len(q.IDs))
		for _, id := range q.IDs {
			p, err := resolveID(ctx, tx, roomID, id)
			if err != nil {
				return nil, err
			}
			// Our own integers, so inlining them cannot inject and
			// does not run into SQLite's bound-parameter limit.
			seqs = append(seqs, strconv.FormatInt(p.seq, 10))
		}
		where = append(where, "m.seq IN ("+strings.Join(seqs, ",")+")")
	}
	ft, err := db.fullTextFilter(ctx, tx, roomID, q.FullText)
	if err != nil {
		return nil, err
	}

	page := &store.Page{Count: -1}
	switch {
	case len(where) == 0 && ft == nil:
		err = tx.QueryRowContext(ctx, `SELECT msg_count FROM rooms WHERE id = ?`, roomID).Scan(&page.Count)
	case len(where) == 0 && ft.count >= 0:
		page.Count = ft.count
	}
	// With few full-text matches, fetch them by seq ("+" keeps SQLite from
	// walking the room index instead); otherwise walk the room in archive
	// order and test each message against the match set.
	roomCond := "m.room_id = ?"
	if ft != nil {
		if ft.drive {
			roomCond = "+m.room_id = ?"
		}
		where = append(where, ft.clause)
		args = append(args, ft.args...)
	}
	filter := strings.Join(append([]string{roomCond}, where...), " AND ")
	args = append([]any{roomID}, args...)
	if err == nil && page.Count < 0 {
		err = tx.QueryRowContext(ctx, `SELECT count(*) FROM messages m WHERE `+filter, args...).Scan(&page.Count)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: count archive of %s: %w", q.Room, err)
	}
	if q.Max <= 0 {
		page.Complete = page.Count == 0
		return page, nil
	}

	if cursor != nil {
		if backward {
			filter += " AND (m.stamp, m.seq) < (?, ?)"
		} else {
			filter += " AND (m.stamp, m.seq) > (?, ?)"
		}
		args = append(args, cursor.stamp, cursor.seq)
	}
	order := "m.stamp, m.seq"
	if backward {
		order = "m.stamp DESC, m.seq DESC"
	}
	args = append(args, q.Max+1)
	rows, err := tx.QueryContext(ctx, `SELECT `+msgColumns+` FROM messages m JOIN rooms r ON r.id = m.room_id
		WHERE `+filter+` ORDER BY `+order+` LIMIT ?`, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: query archive of %s: %w", q.Room, err)
	}
	defer rows.Close()
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: query archive of %s: %w", q.Room, err)
		}
		page.Messages = append(page.Messages, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: query archive of %s: %w", q.Room, err)
	}
	page.Complete = len(page.Messages) <= q.Max
	if !page.Complete {
		page.Messages = page.Messages[:q.Max]
	}
	if backward {
		slices.Reverse(page.Messages)
	}
	if n := len(page.Messages); n > 0 {
		page.First = page.Messages[0].ArchiveID()
		page.Last = page.Messages[n-1].ArchiveID()
	}
	if q.Flip {
		slices.Reverse(page.Messages)
	}
	return page, nil
}

// withClause turns the XEP-0313 'with' field into a condition. For a MUC
// archive it names the publisher (§4.1.1): an occupant JID of this room
// matches the nick, any other JID matches the real bare JID (a resource on
// it is ignored). The room's own bare JID matches everything, so it adds no
// condition.
func withClause(room, with string) (string, any, bool) {
	bare, res, hasRes := strings.Cut(with, "/")
	if strings.EqualFold(bare, room) {
		if !hasRes {
			return "", nil, false
		}
		return "m.nick = ?", res, true
	}
	return "m.real_jid = ?", bare, true
}
