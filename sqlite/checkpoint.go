package sqlite

import (
	"context"
	"database/sql"
	"sync"
	"time"
)

// checkpointInterval is how often the WAL is copied back into the main
// file. At 200 messages a second that is a few hundred pages each time.
const checkpointInterval = time.Second

// checkpointer copies the WAL back into the database file beside the
// writer (PRAGMA wal_checkpoint(PASSIVE): it never waits for the writer or
// the readers, and they never wait for it), so the fsync it ends with is
// never part of an archive commit.
type checkpointer struct {
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

func (db *DB) startCheckpointer(dsn string) {
	db.ck.stop, db.ck.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(db.ck.done)
		c, err := sql.Open(driverName, dsn)
		if err != nil {
			return // the writer's close still checkpoints
		}
		defer c.Close()
		c.SetMaxOpenConns(1)
		t := time.NewTicker(checkpointInterval)
		defer t.Stop()
		for {
			select {
			case <-db.ck.stop:
				return
			case <-t.C:
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				_, _ = c.ExecContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`)
				cancel()
			}
		}
	}()
}

func (db *DB) stopCheckpointer() {
	if db.ck.stop != nil {
		db.ck.once.Do(func() { close(db.ck.stop) })
		<-db.ck.done
	}
}
