package bouncer

import (
	"context"
	"time"

	"xmppbouncer/store"
)

// Store is what the core needs from durable storage: the room archive,
// the offline store, catch-up cursors, push registrations and a little
// state, in the value types of package store. The sqlite package implements
// it (the embedded default; store_test.go checks that); another
// implementation (PostgreSQL for multi-account hosting, or a fake in a
// test) only has to keep the same rules: appends dedup by stanza-id, reads
// see every committed write, cursors only move forward.
type Store interface {
	ArchiveStore
	DeliveryStore
	// State is a small key/value table (admin settings).
	GetState(ctx context.Context, key string) (string, bool, error)
	SetState(ctx context.Context, key, value string) error
	PushRegistrations(ctx context.Context) ([]store.PushRegistration, error)
	SetPushRegistration(ctx context.Context, r store.PushRegistration) error
	DeletePushRegistration(ctx context.Context, resource, service, node string) (bool, error)
}

// ArchiveStore is the room archive (XEP-0045 history, XEP-0313 MAM).
type ArchiveStore interface {
	Append(ctx context.Context, m *store.Message) (bool, error)
	AppendBatch(ctx context.Context, ms []*store.Message) (int, error)
	History(ctx context.Context, room string, lim store.HistoryLimit, defaultMax int) ([]*store.Message, error)
	After(ctx context.Context, room string, seq int64, max int, notBefore time.Time) ([]*store.Message, error)
	Last(ctx context.Context, room string) (*store.Message, error)
	Query(ctx context.Context, q store.Query) (*store.Page, error)
	Prune(ctx context.Context, olderThan time.Time) (int64, error)
	Size(ctx context.Context) (messages, bytes int64, err error)
}

// DeliveryStore holds what the bouncer keeps for clients that are away:
// offline messages (XEP-0160) and per-client room cursors.
type DeliveryStore interface {
	StoreOffline(ctx context.Context, ms []store.Offline, limit int) (int, error)
	OfflineMessages(ctx context.Context) ([]store.Offline, error)
	DeleteOffline(ctx context.Context, seq int64) error
	PruneOffline(ctx context.Context, olderThan time.Time) (int64, error)
	OfflineCount(ctx context.Context) (int, error)
	Cursors(ctx context.Context) ([]store.Cursor, error)
	SaveCursors(ctx context.Context, cs []store.Cursor) error
	PruneCursors(ctx context.Context, olderThan time.Time) (int64, error)
}
