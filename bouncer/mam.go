package bouncer

import (
	"context"
	"errors"
	"strconv"
	"time"

	"xmppbouncer/sessions"
	"xmppbouncer/stanza"
	"xmppbouncer/store"
)

// serveMAM answers a client's MAM query to an archived room from SQLite
// (XEP-0313 §4), never upstream.
func (r *Room) serveMAM(s *sessions.Session, el, q *stanza.Element) {
	if el.Type() != "set" {
		r.b.clients.of(s).send(errorFromServer(el, s, r.b.domain, stanza.ErrModify, "bad-request", "MAM queries are type set"))
		return
	}
	query, err := parseMAMQuery(r.JID, q, r.b.opt.Config.History.MAMMaxPage)
	if err != nil {
		r.b.clients.of(s).send(errorFromServer(el, s, r.b.domain, stanza.ErrModify, "bad-request", err.Error()))
		return
	}
	// Read beside the loop, after every message archived so far is
	// committed; the answer comes back as an event.
	id, to, room, qid := s.ID, s.JID.String(), r.JID, q.Get("queryid")
	r.b.offLoop(func(ctx context.Context, db Store) func() {
		page, err := db.Query(ctx, query)
		var out []*stanza.Element
		switch {
		case errors.Is(err, store.ErrItemNotFound):
			out = append(out, stanza.ErrorReply(el, stanza.ErrCancel, "item-not-found", "no such message in the archive"))
		case err != nil:
			r.b.log.Error("MAM query failed", "room", room, "err", err)
			out = append(out, stanza.ErrorReply(el, stanza.ErrWait, "internal-server-error", ""))
		default:
			out = mamPage(page, room, to, qid, el.ID())
		}
		return func() {
			s := r.b.reg.ByID(id)
			if s == nil {
				return
			}
			for _, o := range out {
				if o.Type() == "error" {
					o.Set("from", room)
					o.Set("to", to)
				}
				r.b.clients.of(s).send(o)
			}
		}
	})
}

// mamPage renders one page of archive results and the final answer
// (XEP-0313 §4.1.2, §4.2).
func mamPage(page *store.Page, room, to, qid, iqID string) []*stanza.Element {
	out := make([]*stanza.Element, 0, len(page.Messages)+1)
	for _, m := range page.Messages {
		inner, err := stanza.Parse(m.XML)
		if err != nil {
			continue
		}
		inner = inner.Without(func(c *stanza.Element) bool { return c.Is(stanza.NSDelay, "delay") })
		res := stanza.New(stanza.NSMAM, "result", "queryid", qid, "id", m.ArchiveID())
		res.Append(stanza.New(stanza.NSForward, "forwarded").Append(
			stanza.New(stanza.NSDelay, "delay", "stamp", m.Stamp.UTC().Format(mamStampFormat)),
			inner))
		out = append(out, stanza.New(stanza.NSClient, "message", "from", room, "to", to).Append(res))
	}
	fin := stanza.New(stanza.NSMAM, "fin")
	if page.Complete {
		fin.Set("complete", "true")
	}
	// Not mellium's paging.Set: it always writes <first/> and <last/>, and
	// an empty page has neither, only the count (XEP-0059).
	set := stanza.New(stanza.NSRSM, "set")
	if page.First != "" {
		set.Append(stanza.New(stanza.NSRSM, "first").AppendText(page.First))
		set.Append(stanza.New(stanza.NSRSM, "last").AppendText(page.Last))
	}
	set.Append(stanza.New(stanza.NSRSM, "count").AppendText(strconv.Itoa(page.Count)))
	fin.Append(set)
	return append(out, stanza.New(stanza.NSClient, "iq", "type", "result", "id", iqID, "from", room, "to", to).Append(fin))
}

// parseMAMQuery reads the data form (XEP-0313 §5) and RSM set (XEP-0059).
// Both by hand: mellium's form.Data refuses a form with an element it does
// not know, and paging has request types to send, none to read one (no
// type holds max, after and before together, nor tells <before/> empty,
// the last page, from absent).
func parseMAMQuery(room string, q *stanza.Element, maxPage int) (store.Query, error) {
	out := store.Query{Room: room, Max: maxPage}
	if form := q.Child(stanza.NSDataForm, "x"); form != nil {
		for _, f := range form.ChildrenNamed(stanza.NSDataForm, "field") {
			vals := f.ChildrenNamed(stanza.NSDataForm, "value")
			v := ""
			if len(vals) > 0 {
				v = vals[0].Text()
			}
			var err error
			switch f.Get("var") {
			case "FORM_TYPE":
				if v != stanza.NSMAM {
					return out, errors.New("FORM_TYPE must be " + stanza.NSMAM)
				}
			case "start":
				out.Start, err = time.Parse(time.RFC3339Nano, v)
			case "end":
				out.End, err = time.Parse(time.RFC3339Nano, v)
			case "with":
				out.With = v
			case "before-id":
				out.BeforeID = v
			case "after-id":
				out.AfterID = v
			case "ids":
				for _, x := range vals {
					out.IDs = append(out.IDs, x.Text())
				}
			case "{" + stanza.NSFulltext + "}fulltext", "fulltext":
				out.FullText = v
			default:
				return out, errors.New("unsupported field " + f.Get("var"))
			}
			if err != nil {
				return out, errors.New("bad timestamp in field " + f.Get("var"))
			}
		}
	}
	if set := q.Child(stanza.NSRSM, "set"); set != nil {
		if m := set.Child(stanza.NSRSM, "max"); m != nil {
			n, err := strconv.Atoi(m.Text())
			if err != nil || n < 0 {
				return out, errors.New("bad RSM max")
			}
			out.Max = min(n, maxPage)
		}
		if a := set.Child(stanza.NSRSM, "after"); a != nil {
			out.After = a.Text()
		}
		if bf := set.Child(stanza.NSRSM, "before"); bf != nil {
			out.Before, out.BeforeSet = bf.Text(), true
		}
	}
	out.Flip = q.Child(stanza.NSMAM, "flip-page") != nil
	return out, nil
}
