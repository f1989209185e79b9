package bouncer

import (
	"context"

	"xmppbouncer/sqlite"
)

// Work that waits on disk leaves the loop: it runs in its own goroutine and
// comes back as an event.

// offLoop runs work beside the loop with the archive; the function it
// returns, if any, then runs on the loop.
func (b *Bouncer) offLoop(work func(ctx context.Context, db *sqlite.DB) func()) {
	db := b.opt.Archive
	if db == nil {
		return
	}
	b.bg.Add(1)
	go func() {
		defer b.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), b.opt.DBTimeout)
		defer cancel()
		if then := work(ctx, db); then != nil {
			b.post(then)
		}
	}()
}

// post runs f on the loop, unless the loop has stopped.
func (b *Bouncer) post(f func()) {
	select {
	case b.events <- funcEvent{f: f}:
	case <-b.stopped:
	}
}

// background runs a write beside the loop and logs its failure.
func (b *Bouncer) background(what string, work func(ctx context.Context, db *sqlite.DB) error) {
	b.offLoop(func(ctx context.Context, db *sqlite.DB) func() {
		if err := work(ctx, db); err != nil {
			b.log.Error(what+" failed", "err", err)
		}
		return nil
	})
}
