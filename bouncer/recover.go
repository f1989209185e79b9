package bouncer

import (
	"runtime/debug"
	"sync/atomic"

	"xmppbouncer/stanza"
)

// Recoveries is how many events the loop dropped because handling them
// panicked. Safe to call from any goroutine.
func (b *Bouncer) Recoveries() uint64 { return b.recovered.Load() }

// safely runs handle for ev and turns a panic into a log line and a
// dropped event, so one bad stanza cannot take every client down. Run
// wraps each event in it; this is the only recovery.
func (b *Bouncer) safely(ev event, handle func(event)) {
	defer func() {
		if r := recover(); r != nil {
			b.reportPanic(ev, r)
		}
	}()
	handle(ev)
}

func (b *Bouncer) reportPanic(ev event, r any) {
	n := b.recovered.Add(1)
	attrs := []any{"panic", r, "event", eventKind(ev), "recoveries", n}
	switch ev := ev.(type) {
	case clientStanza:
		attrs = append(attrs, "session", ev.id, "stanza", stanzaKind(ev.el))
		if s := b.reg.ByID(ev.id); s != nil {
			attrs = append(attrs, "jid", s.JID.String())
		}
	case upStanza:
		attrs = append(attrs, "stanza", stanzaKind(ev.el), "from", ev.el.From())
	case clientBound:
		attrs = append(attrs, "session", ev.id)
	case clientClosed:
		attrs = append(attrs, "session", ev.id)
	}
	attrs = append(attrs, "stack", string(debug.Stack()))
	b.log.Error("bouncer: event handler panicked; event dropped", attrs...)
}

// recoveredCounter is embedded in Bouncer.
type recoveredCounter = atomic.Uint64

func eventKind(ev event) string {
	switch ev.(type) {
	case upOnline:
		return "upstream-online"
	case upStanza:
		return "upstream-stanza"
	case upOffline:
		return "upstream-offline"
	case clientBound:
		return "client-bound"
	case clientStanza:
		return "client-stanza"
	case clientClosed:
		return "client-closed"
	case funcEvent:
		return "func"
	}
	return "unknown"
}

func stanzaKind(el *stanza.Element) string {
	if el == nil {
		return ""
	}
	return el.Kind() + "/" + el.Type()
}
