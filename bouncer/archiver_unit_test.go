package bouncer

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"xmppbouncer/store"
)

// stuckStore is a Store whose appends wait until released, like a
// database locked by another process.
type stuckStore struct {
	Store
	release chan struct{}
}

func (s *stuckStore) AppendBatch(ctx context.Context, ms []*store.Message) (int, error) {
	<-s.release
	return len(ms), nil
}

// The archiver's queue is bounded: past it, the upstream reader is held
// (admit waits) until half of it is done; nothing is dropped.
func TestArchiverQueueBound(t *testing.T) {
	st := &stuckStore{release: make(chan struct{})}
	a := newArchiver(st, slog.New(slog.DiscardHandler), func(f func()) { f() }, func() int { return 0 })
	a.max = 10
	done := 0
	for i := 0; i < 10; i++ {
		a.appendMsg(&store.Message{Room: "r@muc"}, func() { done++ })
	}
	admitted := make(chan struct{})
	go func() { a.admit(); close(admitted) }()
	select {
	case <-admitted:
		t.Fatal("admitted past the bound")
	case <-time.After(200 * time.Millisecond):
	}
	close(st.release)
	select {
	case <-admitted:
	case <-time.After(5 * time.Second):
		t.Fatal("still held after the queue drained")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a.close(ctx)
	if done != 10 {
		t.Fatalf("%d of 10 appends answered", done)
	}
}
