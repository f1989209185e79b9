package bouncer

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"xmppbouncer/bouncer/admin"
	"xmppbouncer/config"
)

// retention is the archive retention in force (0: forever), shared by the
// loop (the history command sets it) and the pruner goroutine.
type retention struct {
	d    atomic.Int64
	wake chan struct{} // the pruner runs now
}

func newRetention(d time.Duration) *retention {
	r := &retention{wake: make(chan struct{}, 1)}
	r.d.Store(int64(d))
	return r
}

func (r *retention) get() time.Duration { return time.Duration(r.d.Load()) }

// set changes the retention, and with prune wakes the pruner to apply it.
func (r *retention) set(d time.Duration, prune bool) {
	r.d.Store(int64(d))
	if !prune {
		return
	}
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// RunPruner deletes archived messages older than the retention, at start,
// hourly, and when the history command changes the retention, until ctx is
// done. The retention is [history] retention unless the history command
// set another, which is stored in the database. It replaces Prune.
func (b *Bouncer) RunPruner(ctx context.Context) {
	db := b.opt.Archive
	if db == nil {
		return
	}
	gctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	if v, ok, err := db.GetState(gctx, admin.StateRetention); err == nil && ok {
		if d, err := config.ParseRetention(v); err == nil {
			b.retention.set(d, false)
		}
	}
	cancel()
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if d := b.retention.get(); d > 0 {
			pruneOnce(ctx, db, d, b.log)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-b.retention.wake:
		}
	}
}

func pruneOnce(ctx context.Context, db Store, retention time.Duration, log *slog.Logger) {
	pctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	n, err := db.Prune(pctx, time.Now().Add(-retention))
	if err != nil && ctx.Err() == nil {
		log.Error("archive pruning failed", "err", err)
	} else if n > 0 {
		log.Info("archive pruned", "deleted", n)
	}
}
