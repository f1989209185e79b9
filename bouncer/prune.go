package bouncer

import (
	"context"
	"log/slog"
	"time"

	"xmppbouncer/sqlite"
)

// Prune deletes archived messages older than the retention period, once
// at start and then hourly, until ctx is done. Zero retention keeps
// everything. It runs beside the loop: the archive has its own writer lock.
func Prune(ctx context.Context, db *sqlite.DB, retention time.Duration, log *slog.Logger) {
	if retention <= 0 {
		return
	}
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		n, err := db.Prune(pctx, time.Now().Add(-retention))
		cancel()
		if err != nil && ctx.Err() == nil {
			log.Error("archive pruning failed", "err", err)
		} else if n > 0 {
			log.Info("archive pruned", "deleted", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
