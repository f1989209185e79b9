package bouncer

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"xmppbouncer/store"
	"xmppbouncer/upstream"
)

// The archiver is the one goroutine that writes to SQLite, so the loop
// never waits on disk. The loop hands it jobs without blocking; it runs
// them in order, committing consecutive room messages (and consecutive
// offline messages) in one transaction each (group commit), and answers
// through events. A read is queued like a write and starts, in its own
// goroutine, once every write queued before it is committed: a history
// replay or MAM page sees every message the loop archived before asking.
//
// A write that fails is retried with backoff and never dropped. While it
// keeps failing (another process holds the database, the disk is full)
// the archive is "down": that is logged loudly and shown in status, and
// rooms forward their messages without waiting for the commit.

type archiver struct {
	db    Store
	log   *slog.Logger
	post  func(func()) // runs a function on the loop
	limit func() int   // the offline store's bound

	mu     sync.Mutex
	cond   *sync.Cond
	queue  []archJob
	closed bool
	done   chan struct{}
	reads  sync.WaitGroup

	down     atomic.Bool   // the last commit failed and is being retried
	failures atomic.Uint64 // failed commits since start
	pending  atomic.Int64  // jobs queued or running

	// max bounds the queue: past it, admit holds the upstream reader (not
	// the loop) until half of it is done. The server then buffers for us;
	// nothing is dropped.
	max     int64
	drained *sync.Cond // signalled as jobs finish, with mu
	paused  atomic.Bool

	// onMark acknowledges upstream stanzas once they are durable and
	// their h persisted (upsm.go); nil without upstream XEP-0198.
	onMark func(upstream.Token)
	// offlineBytes is the XML of offline messages queued and not yet
	// committed; past offlineMax (a full disk) new ones are refused.
	offlineBytes atomic.Int64
	offlineMax   int64

	onRecover func() // runs on the loop when a failing write succeeds; with mu
}

// setOnMark sets what acknowledges upstream stanzas once durable.
func (a *archiver) setOnMark(f func(upstream.Token)) { a.onMark = f }

// setOnRecover sets what runs on the loop when the archive is back.
func (a *archiver) setOnRecover(f func()) {
	a.mu.Lock()
	a.onRecover = f
	a.mu.Unlock()
}

// offlineQueueMax bounds the memory of offline messages waiting for their
// commit: while the disk is full they would pile up without end. Past it
// the store refuses them, and their senders get resource-constraint.
const offlineQueueMax = 4 << 20

// archiveQueueMax is the default bound of the archiver's queue: at 200
// room messages a second, over eight minutes of a locked database.
const archiveQueueMax = 100_000

// archJob is one unit of archive work; exactly one field is set.
type archJob struct {
	msg     *store.Message // a room message; then runs on the loop once committed
	offline *store.Offline // an offline message; stored(ok) runs on the loop
	write   func(ctx context.Context, db Store) error
	read    func(ctx context.Context, db Store)
	chat    *store.Chat     // a 1:1 message for the durable chat queue; then runs once committed
	mark    *upstream.Token // an upstream stanza whose writes are all queued before this

	then   func()
	stored func(ok bool)
}

// archiveBatchMax bounds one group commit.
const archiveBatchMax = 512

func newArchiver(db Store, log *slog.Logger, post func(func()), limit func() int) *archiver {
	a := &archiver{db: db, log: log, post: post, limit: limit, done: make(chan struct{}), max: archiveQueueMax, offlineMax: offlineQueueMax}
	a.cond = sync.NewCond(&a.mu)
	a.drained = sync.NewCond(&a.mu)
	go a.run()
	return a
}

func (a *archiver) enqueue(j archJob) {
	a.pending.Add(1)
	a.mu.Lock()
	a.queue = append(a.queue, j)
	a.mu.Unlock()
	a.cond.Signal()
}

// appendMsg archives a room message; then runs on the loop once committed
// (m.Seq and m.Inserted are set by then).
func (a *archiver) appendMsg(m *store.Message, then func()) {
	a.enqueue(archJob{msg: m, then: then})
}

// storeOffline stores an offline message; stored runs on the loop with
// whether the store took it (false: it was full).
//
// While earlier ones wait for their commit (a full disk) at most
// offlineMax bytes of them are held: past that stored(false) runs at once,
// on the caller's goroutine (the loop).
func (a *archiver) storeOffline(o *store.Offline, stored func(bool)) {
	n := int64(len(o.XML))
	if a.offlineBytes.Add(n) > a.offlineMax {
		a.offlineBytes.Add(-n)
		stored(false)
		return
	}
	a.enqueue(archJob{offline: o, stored: stored})
}

// write runs an ordered write; it is retried until it succeeds.
func (a *archiver) write(w func(ctx context.Context, db Store) error) {
	a.enqueue(archJob{write: w})
}

// read runs r in its own goroutine once every earlier write is committed.
// While the archive is down (a write keeps failing, e.g. the disk is full)
// it runs at once instead, on what is committed: reads must not wait
// behind a write that may not succeed for minutes (see degraded).
func (a *archiver) read(r func(ctx context.Context, db Store)) {
	if a.down.Load() {
		a.startRead(r)
		return
	}
	a.enqueue(archJob{read: r})
}

func (a *archiver) startRead(r func(ctx context.Context, db Store)) {
	a.reads.Add(1)
	go func() {
		defer a.reads.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		r(ctx, a.db)
	}()
}

// degraded reports whether reads may miss writes that are queued: the
// archive is down.
func (a *archiver) degraded() bool { return a.down.Load() }

// releaseReads starts, at once, the reads waiting behind a write that just
// failed: those later in the batch being run (rest; they become no-ops
// there) and those still queued.
func (a *archiver) releaseReads(rest []archJob) {
	for k := range rest {
		if r := rest[k].read; r != nil {
			rest[k].read = nil
			a.startRead(r)
		}
	}
	a.mu.Lock()
	kept := a.queue[:0]
	var reads []func(ctx context.Context, db Store)
	for _, j := range a.queue {
		if j.read != nil {
			reads = append(reads, j.read)
			continue
		}
		kept = append(kept, j)
	}
	clear(a.queue[len(kept):])
	a.queue = kept
	a.mu.Unlock()
	for _, r := range reads {
		a.pending.Add(-1)
		a.startRead(r)
	}
}

// close lets the archiver finish what is queued and waits for it, at most
// until ctx is done.
func (a *archiver) close(ctx context.Context) {
	a.mu.Lock()
	a.closed = true
	a.drained.Broadcast()
	a.mu.Unlock()
	a.cond.Signal()
	select {
	case <-a.done:
		a.reads.Wait()
	case <-ctx.Done():
		a.log.Error("archive writes still pending at shutdown", "jobs", a.pending.Load())
	}
}

// admit is called by the upstream reader before it hands the loop a
// stanza: while the queue is over its bound it waits, so the backlog stays
// in the server's hands instead of growing here.
func (a *archiver) admit() {
	if a.pending.Load() < a.max {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.paused.Swap(true) {
		a.log.Error("archive queue full: reading from upstream paused until it drains", "jobs", a.pending.Load())
	}
	for a.pending.Load() >= a.max/2 && !a.closed {
		a.drained.Wait()
	}
	a.paused.Store(false)
	a.log.Warn("archive queue drained: reading from upstream again")
}

func (a *archiver) take() []archJob {
	a.mu.Lock()
	defer a.mu.Unlock()
	for len(a.queue) == 0 && !a.closed {
		a.cond.Wait()
	}
	q := a.queue
	a.queue = nil
	return q
}

func (a *archiver) run() {
	defer close(a.done)
	for {
		jobs := a.take()
		if len(jobs) == 0 {
			return // closed and drained
		}
		var thens []func()
		var mark *upstream.Token // the newest upstream stanza all of whose writes are in this round
		for i := 0; i < len(jobs); {
			j := jobs[i]
			n := 1
			switch {
			case j.mark != nil:
				mark = j.mark
			case j.msg != nil:
				// Marks between room messages do not split the group
				// commit: the round's newest mark is saved after it.
				for i+n < len(jobs) && (jobs[i+n].msg != nil || jobs[i+n].mark != nil) && n < archiveBatchMax {
					n++
				}
				ms := make([]*store.Message, 0, n)
				for k := 0; k < n; k++ {
					if m := jobs[i+k].mark; m != nil {
						mark = m
						continue
					}
					ms = append(ms, jobs[i+k].msg)
				}
				a.retry("archiving room messages", jobs[i+n:], func(ctx context.Context) error {
					_, err := a.db.AppendBatch(ctx, ms)
					return err
				})
				for k := 0; k < n; k++ {
					if jobs[i+k].msg != nil {
						thens = append(thens, jobs[i+k].then)
					}
				}
			case j.chat != nil:
				for i+n < len(jobs) && (jobs[i+n].chat != nil || jobs[i+n].mark != nil) && n < archiveBatchMax {
					n++
				}
				cs := make([]*store.Chat, 0, n)
				for k := 0; k < n; k++ {
					if m := jobs[i+k].mark; m != nil {
						mark = m
						continue
					}
					cs = append(cs, jobs[i+k].chat)
					thens = append(thens, jobs[i+k].then)
				}
				a.retry("storing chats", jobs[i+n:], func(ctx context.Context) error { return storeChats(ctx, a.db, cs) })
			case j.offline != nil:
				for i+n < len(jobs) && jobs[i+n].offline != nil && n < archiveBatchMax {
					n++
				}
				rows := make([]store.Offline, n)
				for k := range rows {
					rows[k] = *jobs[i+k].offline
				}
				stored := 0
				a.retry("storing offline messages", jobs[i+n:], func(ctx context.Context) error {
					var err error
					stored, err = a.db.StoreOffline(ctx, rows, a.limit())
					return err
				})
				for k := range rows {
					a.offlineBytes.Add(-int64(len(rows[k].XML)))
				}
				for k := 0; k < n; k++ {
					jobs[i+k].offline.Seq = rows[k].Seq
					ok, f := k < stored, jobs[i+k].stored
					thens = append(thens, func() { f(ok) })
				}
			case j.write != nil:
				a.retry("writing to the archive", jobs[i+1:], func(ctx context.Context) error { return j.write(ctx, a.db) })
			case j.read != nil:
				// What the earlier commits answer reaches the loop
				// before what this read finds.
				if len(thens) > 0 {
					ts := thens
					a.post(func() {
						for _, f := range ts {
							f()
						}
					})
					thens = nil
				}
				a.startRead(j.read)
			}
			i += n
			if a.pending.Add(int64(-n)) < a.max/2 && a.paused.Load() {
				a.mu.Lock()
				a.drained.Broadcast()
				a.mu.Unlock()
			}
		}
		if mark != nil && a.onMark != nil {
			m := *mark
			a.retry("saving the upstream stream-management state", nil, func(ctx context.Context) error { return saveUpstreamH(ctx, a.db, m) })
			a.onMark(m)
		}
		if len(thens) > 0 {
			a.post(func() {
				for _, f := range thens {
					f()
				}
			})
		}
	}
}

// retry runs one write until it succeeds, with backoff from 50 ms to 5 s.
// At shutdown it gives up after a few tries, loudly.
// Reads waiting behind it (rest: the rest of the batch being run) are
// released when it fails.
func (a *archiver) retry(what string, rest []archJob, f func(ctx context.Context) error) {
	wait := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := f(ctx)
		cancel()
		if err == nil {
			if a.down.Swap(false) {
				a.log.Warn("archive available again", "what", what, "after_attempts", attempt)
				a.mu.Lock()
				f := a.onRecover
				a.mu.Unlock()
				if f != nil {
					a.post(f)
				}
			}
			return
		}
		a.failures.Add(1)
		if !a.down.Swap(true) {
			a.log.Error("ARCHIVE UNAVAILABLE: retrying; messages are forwarded meanwhile and archived once it works", "what", what, "err", err)
		}
		a.releaseReads(rest)
		a.mu.Lock()
		closed := a.closed
		a.mu.Unlock()
		if closed && attempt >= 5 {
			a.log.Error("archive write abandoned at shutdown", "what", what, "err", err)
			return
		}
		time.Sleep(wait)
		wait = min(2*wait, 5*time.Second)
	}
}
