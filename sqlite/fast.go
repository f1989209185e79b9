package sqlite

import (
	"context"
	"fmt"
	"time"

	"xmppbouncer/store"
)

func unixOrZero(s int64) time.Time {
	if s == 0 {
		return time.Time{}
	}
	return time.Unix(s, 0).UTC()
}

// FastTokens lists the tokens of userAgent, or every token when it is "",
// ordered by device and creation.
func (db *DB) FastTokens(ctx context.Context, userAgent string) ([]store.FastToken, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT hash, user_agent, software, device, mechanism, created, expires, last_used, count
		FROM fast_tokens WHERE ? = '' OR user_agent = ? ORDER BY user_agent, created`, userAgent, userAgent)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list FAST tokens: %w", err)
	}
	defer rows.Close()
	var out []store.FastToken
	for rows.Next() {
		var t store.FastToken
		var created, expires, used, count int64
		if err := rows.Scan(&t.Hash, &t.UserAgent, &t.Software, &t.Device, &t.Mechanism, &created, &expires, &used, &count); err != nil {
			return nil, fmt.Errorf("sqlite: list FAST tokens: %w", err)
		}
		t.Created, t.Expires, t.LastUsed, t.Count = unixOrZero(created), unixOrZero(expires), unixOrZero(used), uint64(count)
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list FAST tokens: %w", err)
	}
	return out, nil
}

// AddFastToken stores t; it is committed when AddFastToken returns.
func (db *DB) AddFastToken(ctx context.Context, t store.FastToken) error {
	_, err := db.w.ExecContext(ctx, `INSERT INTO fast_tokens(hash, user_agent, software, device, mechanism, created, expires)
		VALUES(?, ?, ?, ?, ?, ?, ?)`, t.Hash, t.UserAgent, t.Software, t.Device, t.Mechanism, t.Created.Unix(), t.Expires.Unix())
	if err != nil {
		return fmt.Errorf("sqlite: store FAST token: %w", err)
	}
	return nil
}

// UseFastToken records a login with the token. With a count (> 0) it
// must be above the highest seen so far, else the login is a replay and
// UseFastToken reports false; it also reports false for a token that is
// gone.
func (db *DB) UseFastToken(ctx context.Context, hash []byte, count uint64, at time.Time) (bool, error) {
	res, err := db.w.ExecContext(ctx, `UPDATE fast_tokens SET last_used = ?, count = MAX(count, ?)
		WHERE hash = ? AND (? = 0 OR count < ?)`, at.Unix(), int64(count), hash, int64(count), int64(count))
	if err != nil {
		return false, fmt.Errorf("sqlite: use FAST token: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("sqlite: use FAST token: %w", err)
	}
	return n == 1, nil
}

// DeleteFastToken removes one token; it reports whether it existed.
func (db *DB) DeleteFastToken(ctx context.Context, hash []byte) (bool, error) {
	res, err := db.w.ExecContext(ctx, `DELETE FROM fast_tokens WHERE hash = ?`, hash)
	if err != nil {
		return false, fmt.Errorf("sqlite: delete FAST token: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("sqlite: delete FAST token: %w", err)
	}
	return n > 0, nil
}

// DeleteFastTokens revokes every token of userAgent and returns how many.
func (db *DB) DeleteFastTokens(ctx context.Context, userAgent string) (int64, error) {
	res, err := db.w.ExecContext(ctx, `DELETE FROM fast_tokens WHERE user_agent = ?`, userAgent)
	if err != nil {
		return 0, fmt.Errorf("sqlite: revoke FAST tokens of %q: %w", userAgent, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("sqlite: revoke FAST tokens of %q: %w", userAgent, err)
	}
	return n, nil
}

// DeleteExpiredFastTokens removes the tokens expired at now.
func (db *DB) DeleteExpiredFastTokens(ctx context.Context, now time.Time) (int64, error) {
	res, err := db.w.ExecContext(ctx, `DELETE FROM fast_tokens WHERE expires <= ?`, now.Unix())
	if err != nil {
		return 0, fmt.Errorf("sqlite: prune FAST tokens: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}
