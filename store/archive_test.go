package store

import "testing"

// Archive ids round-trip: a message without a stanza-id is named
// "xb-<seq>", and only that exact spelling reads back.
func TestArchiveIDRoundTrip(t *testing.T) {
	m := &Message{Seq: 42}
	if got := m.ArchiveID(); got != "xb-42" {
		t.Fatalf("ArchiveID = %q, want xb-42", got)
	}
	if seq, ok := SyntheticSeq(m.ArchiveID()); !ok || seq != 42 {
		t.Fatalf("SyntheticSeq(xb-42) = %d, %v", seq, ok)
	}
	if got := (&Message{Seq: 42, StanzaID: "abc"}).ArchiveID(); got != "abc" {
		t.Fatalf("ArchiveID with stanza-id = %q, want abc", got)
	}
	for _, id := range []string{"", "42", "xb-", "xb-0", "xb--1", "xb-+1", "xb-042", "xb-4x", "XB-4", "xb-99999999999999999999"} {
		if seq, ok := SyntheticSeq(id); ok {
			t.Errorf("SyntheticSeq(%q) = %d, true; want false", id, seq)
		}
	}
}
