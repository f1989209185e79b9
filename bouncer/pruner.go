package bouncer

import (
	"context"
	"log/slog"
	"time"

	"xmppbouncer/bouncer/admin"
	"xmppbouncer/config"
)

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
			b.admin.retention.Store(int64(d))
		}
	}
	cancel()
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if d := time.Duration(b.admin.retention.Load()); d > 0 {
			pruneOnce(ctx, db, d, b.log)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-b.admin.pruneWake:
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
