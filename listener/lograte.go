package listener

import (
	"log/slog"
	"sync"
	"time"
)

// refusedLogEvery is the window of the refused-connection log: the first
// refusal for a reason is logged at once, the rest of the window's only
// counted, and said in one line at its end.
const refusedLogEvery = 10 * time.Second

// rateLog logs a line per key at most once per window, then one summary
// line with how many were suppressed, so a flood of refused connections
// (hundreds a second) cannot flood the log. It owns its map; an entry
// expires after a window with nothing to suppress.
type rateLog struct {
	log   *slog.Logger
	msg   string
	mu    sync.Mutex
	every time.Duration
	keys  map[string]*rateEntry
}

type rateEntry struct {
	suppressed int
	last       string // the last suppressed remote address
}

func newRateLog(log *slog.Logger, msg string, every time.Duration) *rateLog {
	return &rateLog{log: log, msg: msg, every: every, keys: make(map[string]*rateEntry)}
}

// warn logs msg with reason and remote, unless one was logged for reason
// within the window; then it only counts it.
func (r *rateLog) warn(reason, remote string) {
	r.mu.Lock()
	if e := r.keys[reason]; e != nil {
		e.suppressed++
		e.last = remote
		r.mu.Unlock()
		return
	}
	r.keys[reason] = &rateEntry{}
	every := r.every
	r.mu.Unlock()
	r.log.Warn(r.msg, "remote", remote, "reason", reason)
	time.AfterFunc(every, func() { r.flush(reason) })
}

// flush ends reason's window: it says how many were suppressed, and keeps
// counting for another window, or forgets reason when there were none.
func (r *rateLog) flush(reason string) {
	r.mu.Lock()
	e := r.keys[reason]
	if e == nil || e.suppressed == 0 {
		delete(r.keys, reason)
		r.mu.Unlock()
		return
	}
	n, last, every := e.suppressed, e.last, r.every
	e.suppressed, e.last = 0, ""
	r.mu.Unlock()
	r.log.Warn(r.msg, "reason", reason, "suppressed", n, "within", every, "last_remote", last)
	time.AfterFunc(every, func() { r.flush(reason) })
}
