package bouncer

import (
	"context"
	"time"
)

func errString(err error) string {
	if err == nil {
		return "closed"
	}
	return err.Error()
}

// startup runs once when the loop starts.
func (b *Bouncer) startup() {
	b.dlv.loadCursors()
	b.chats.startup()
	b.muc.roomsStartup()
	b.pushes.startup()
}

// shutdown runs once when the loop stops: what delivery confirmed is
// saved, and the archive's writer drains (for at most archiveDrain).
func (b *Bouncer) shutdown() {
	for _, s := range b.reg.All() {
		b.clients.of(s).end()
	}
	close(b.stopped)
	if b.arch != nil {
		ctx, cancel := context.WithTimeout(context.Background(), archiveDrain)
		defer cancel()
		b.arch.close(ctx)
	}
}

// archiveDrain bounds how long shutdown waits for pending archive writes.
const archiveDrain = 10 * time.Second
