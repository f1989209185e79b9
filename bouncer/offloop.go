package bouncer

import (
	"context"
)

// Work that waits on disk leaves the loop: it runs in its own goroutine and
// comes back as an event.

// offLoop reads from the archive beside the loop, once every write queued
// before it is committed; the function it returns, if any, then runs on
// the loop.
func (b *Bouncer) offLoop(work func(ctx context.Context, db Store) func()) {
	if b.arch == nil {
		return
	}
	b.arch.read(func(ctx context.Context, db Store) {
		if then := work(ctx, db); then != nil {
			b.post(then)
		}
	})
}

// post runs f on the loop, unless the loop has stopped.
func (b *Bouncer) post(f func()) {
	select {
	case b.events <- funcEvent{f: f}:
	case <-b.stopped:
	}
}

// background queues a write to the archive, in order with the others; it
// is retried until it succeeds.
func (b *Bouncer) background(work func(ctx context.Context, db Store) error) {
	if b.arch != nil {
		b.arch.write(work)
	}
}

// dbCtx is the context for the loop's only archive calls: the reads at
// startup (cursors, push registrations), before any client is served.
func (b *Bouncer) dbCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), b.opt.DBTimeout)
}
