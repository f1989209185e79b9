package bouncer

import (
	"testing"
	"time"

	"xmppbouncer/stanza"
)

// The queries the bouncer sends upstream read back, through the parser
// that serves our own clients' MAM queries, as what was asked: the first
// page by time (form), the next ones by RSM after.
func TestMAMQueryReadsBack(t *testing.T) {
	start := time.Date(2026, 3, 4, 5, 6, 7, 890, time.FixedZone("x", 3600))
	first := mamQuery("q1", 100, "", start)
	if first.Get("queryid") != "q1" || first.Child(stanza.NSDataForm, "x").Get("type") != "submit" {
		t.Fatalf("first page: %s", first)
	}
	q, err := parseMAMQuery("r@muc", first, 1000)
	if err != nil || !q.Start.Equal(start.Truncate(time.Second)) || q.Max != 100 || q.After != "" {
		t.Fatalf("first page %s read back as %+v, %v", first, q, err)
	}
	next := mamQuery("q2", 50, "id-9", start)
	if next.Child(stanza.NSDataForm, "x") != nil {
		t.Fatalf("next page carries a form: %s", next)
	}
	q, err = parseMAMQuery("r@muc", next, 1000)
	if err != nil || !q.Start.IsZero() || q.Max != 50 || q.After != "id-9" {
		t.Fatalf("next page %s read back as %+v, %v", next, q, err)
	}
}
