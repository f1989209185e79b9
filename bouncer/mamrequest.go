package bouncer

import (
	"time"

	"mellium.im/xmpp/form"
	"mellium.im/xmpp/paging"

	"xmppbouncer/stanza"
)

// The MAM queries the bouncer sends upstream on its own account (a room's
// catch-up, catchup.go; the chat gap fill, chatfill.go), built with
// mellium's form and paging packages: both shapes are exactly theirs, and
// stanza.FromTokens turns their tokens into our tree.

// mamQuery is the XEP-0313 query with id qid for the page of max messages
// after the archive id after (XEP-0059 §2.2) or, when after is "", from
// start on: a submitted form with FORM_TYPE and start.
func mamQuery(qid string, max int, after string, start time.Time) *stanza.Element {
	q := stanza.New(stanza.NSMAM, "query", "queryid", qid)
	if after == "" {
		sub, _ := form.New(
			form.Hidden("FORM_TYPE", form.Value(stanza.NSMAM)),
			form.Text("start", form.Value(start.UTC().Format(time.RFC3339))),
		).Submit()
		q.Append(stanza.MustFromTokens(sub, stanza.NSMAM))
	}
	set := &paging.RequestNext{Max: uint64(max), After: after}
	return q.Append(stanza.MustFromTokens(set.TokenReader(), stanza.NSMAM))
}
