package bouncer

// The adapter that lets the listener keep its XEP-0484 FAST tokens in
// SQLite. The FAST tokens command is in admin/fast.go.

import (
	"context"
	"time"

	"xmppbouncer/listener"
	"xmppbouncer/store"
)

// FastTokenDB is what the FAST token store needs from the database
// (sqlite.DB has it).
type FastTokenDB interface {
	FastTokens(ctx context.Context, userAgent string) ([]store.FastToken, error)
	AddFastToken(ctx context.Context, t store.FastToken) error
	UseFastToken(ctx context.Context, hash []byte, count uint64, at time.Time) (bool, error)
	DeleteFastToken(ctx context.Context, hash []byte) (bool, error)
	DeleteFastTokens(ctx context.Context, userAgent string) (int64, error)
	DeleteExpiredFastTokens(ctx context.Context, now time.Time) (int64, error)
}

// FastTokenStore adapts db to the listener's token store.
func FastTokenStore(db FastTokenDB) listener.FastTokenStore { return fastStore{db} }

type fastStore struct{ db FastTokenDB }

func (f fastStore) FastTokens(ctx context.Context, ua string) ([]listener.FastToken, error) {
	ts, err := f.db.FastTokens(ctx, ua)
	out := make([]listener.FastToken, len(ts))
	for i, t := range ts {
		out[i] = listener.FastToken(t)
	}
	return out, err
}

func (f fastStore) AddFastToken(ctx context.Context, t listener.FastToken) error {
	return f.db.AddFastToken(ctx, store.FastToken(t))
}

func (f fastStore) UseFastToken(ctx context.Context, hash []byte, count uint64, at time.Time) (bool, error) {
	return f.db.UseFastToken(ctx, hash, count, at)
}

func (f fastStore) DeleteFastToken(ctx context.Context, hash []byte) (bool, error) {
	return f.db.DeleteFastToken(ctx, hash)
}

func (f fastStore) DeleteFastTokens(ctx context.Context, ua string) (int64, error) {
	return f.db.DeleteFastTokens(ctx, ua)
}

func (f fastStore) DeleteExpiredFastTokens(ctx context.Context, now time.Time) (int64, error) {
	return f.db.DeleteExpiredFastTokens(ctx, now)
}
