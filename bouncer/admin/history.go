package admin

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"xmppbouncer/config"
	"xmppbouncer/stanza"
	"xmppbouncer/store"
)

// exportMax bounds one export; older messages are reached with MAM paging.
const exportMax = 1000

// mamStampFormat is XEP-0082's date-time with microseconds, as MAM sends.
const mamStampFormat = "2006-01-02T15:04:05.000000Z"

// history sets the retention, prunes now, or exports a room's archive.
func (a *Commands) history(c *call) {
	if a.opt.Store == nil {
		a.done(c, nil, fault("This bouncer runs without an archive."))
		return
	}
	if c.form == nil {
		x := dataForm("form", "History", "Set how long messages are kept, delete old ones now, or export a room's archive.")
		f := required(field(x, "list-single", "action", "Action", "export"))
		option(f, "Set retention", "retention")
		option(f, "Prune now (delete messages older than the retention)", "prune")
		option(f, "Export a room's archive", "export")
		field(x, "text-single", "retention", `Retention ("0" keeps forever, or e.g. "365d", "72h")`, retentionValue(a.core.Retention()))
		rooms := a.core.Rooms()
		var only []string
		if len(rooms) == 1 {
			only = []string{rooms[0].JID} // the default when there is no choice
		}
		rf := field(x, "list-single", "room", "Room to export", only...)
		for _, r := range rooms {
			option(rf, r.JID, r.JID)
		}
		ff := field(x, "list-single", "format", "Export format", "text")
		option(ff, "Plain text, in this form", "text")
		option(ff, "XEP-0313 results, as messages", "mam")
		field(x, "text-single", "max", "Newest messages to export (at most "+strconv.Itoa(exportMax)+")", "100")
		a.askForm(c, x)
		return
	}
	switch c.value("action") {
	case "retention":
		a.setRetention(c)
	case "prune":
		a.pruneNow(c)
	case "export":
		a.export(c)
	default:
		a.done(c, nil, fault("Choose an action: retention, prune or export."))
	}
}

// setRetention stores the new retention (it overrides [history] retention
// from then on) and wakes the pruner.
func (a *Commands) setRetention(c *call) {
	v := c.value("retention")
	d, err := config.ParseRetention(v)
	if err != nil {
		a.done(c, nil, fault(err.Error()))
		return
	}
	db, timeout := a.opt.Store, a.opt.DBTimeout
	later(a, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		return db.SetState(ctx, StateRetention, retentionValue(d))
	}, func(err error) {
		if err != nil {
			a.done(c, nil, fault("Could not store the retention: "+err.Error()))
			return
		}
		a.core.SetRetention(d, true)
		note := "Retention set to " + retentionText(d) + "; it replaces history.retention from the config file from now on."
		if d > 0 {
			note += " Older messages are being pruned now and then hourly."
		}
		a.done(c, nil, info(note))
	})
}

// pruneNow deletes what the retention says is too old, off the loop, and
// answers when it is done.
func (a *Commands) pruneNow(c *call) {
	d := a.core.Retention()
	if d <= 0 {
		a.done(c, nil, info("Retention is forever: nothing to prune. Set a retention first."))
		return
	}
	db := a.opt.Store
	type result struct {
		n   int64
		err error
	}
	later(a, func() result {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		n, err := db.Prune(ctx, time.Now().Add(-d))
		return result{n, err}
	}, func(r result) {
		if r.err != nil {
			a.done(c, nil, fault("Pruning failed: "+r.err.Error()))
			return
		}
		a.opt.Log.Info("archive pruned on request", "deleted", r.n)
		a.done(c, nil, info("Deleted "+plural(r.n, "message", "messages")+" older than "+retentionText(d)+"."))
	})
}

// export sends a room's newest archived messages as plain text in a result
// form, or as XEP-0313 result messages (queryid = the command's sessionid).
func (a *Commands) export(c *call) {
	room := normJID(c.value("room"))
	if room == "" {
		a.done(c, nil, fault("Choose a room to export."))
		return
	}
	max := exportMax
	if v := c.value("max"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			a.done(c, nil, fault(fmt.Sprintf("%q is not a number of messages.", v)))
			return
		}
		max = min(n, exportMax)
	}
	format := c.value("format")
	if format == "" {
		format = "text"
	}
	db := a.opt.Store
	type result struct {
		page *store.Page
		err  error
	}
	later(a, func() result {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// The last page: RSM <before/> empty (XEP-0059 §2.5).
		p, err := db.Query(ctx, store.Query{Room: room, Max: max, BeforeSet: true})
		return result{p, err}
	}, func(r result) {
		switch {
		case errors.Is(r.err, store.ErrItemNotFound):
			a.done(c, nil, fault("Nothing archived for "+room+"."))
			return
		case r.err != nil:
			a.done(c, nil, fault("Export failed: "+r.err.Error()))
			return
		}
		summary := fmt.Sprintf("%d of %s of %s", len(r.page.Messages), plural(int64(r.page.Count), "archived message", "archived messages"), room)
		if format == "mam" {
			for _, m := range r.page.Messages {
				if el := mamResult(m, room, c.sessionID, c.from.JID); el != nil {
					if !a.core.Send(c.from.ID, el) {
						return // the client left
					}
				}
			}
			a.done(c, nil, info("Sent "+summary+" as XEP-0313 results with queryid "+c.sessionID+"."))
			return
		}
		// The summary once, in the form; a note would repeat it.
		x := dataForm("result", "Archive of "+room, summary+".")
		var lines []string
		for _, m := range r.page.Messages {
			lines = append(lines, textLine(m))
		}
		field(x, "text-multi", "archive", room, lines...)
		a.done(c, x)
	})
}

// mamResult wraps an archived message as an XEP-0313 §5.1 result.
func mamResult(m *store.Message, room, queryid, to string) *stanza.Element {
	inner, err := stanza.Parse(m.XML)
	if err != nil {
		return nil
	}
	inner = inner.Without(func(c *stanza.Element) bool { return c.Is(stanza.NSDelay, "delay") })
	res := stanza.New(stanza.NSMAM, "result", "queryid", queryid, "id", m.ArchiveID())
	res.Append(stanza.New(stanza.NSForward, "forwarded").Append(
		stanza.New(stanza.NSDelay, "delay", "stamp", m.Stamp.UTC().Format(mamStampFormat)),
		inner))
	return stanza.New(stanza.NSClient, "message", "from", room, "to", to).Append(res)
}

// textLine is one archived message as "[time] <nick> body".
func textLine(m *store.Message) string {
	body := "(no text: " + kindOfEmpty(m) + ")"
	if m.Body != nil {
		body = strings.ReplaceAll(*m.Body, "\n", "\n    ")
	}
	return "[" + m.Stamp.UTC().Format("2006-01-02 15:04:05") + "] <" + m.Nick + "> " + body
}

func kindOfEmpty(m *store.Message) string {
	switch {
	case strings.Contains(m.XML, "urn:xmpp:reactions"):
		return "reaction"
	case strings.Contains(m.XML, "urn:xmpp:chat-markers") || strings.Contains(m.XML, "urn:xmpp:receipts"):
		return "marker"
	case strings.Contains(m.XML, "retract"):
		return "retraction"
	}
	return "other"
}
