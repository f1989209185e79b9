package listener

import (
	"context"

	"mellium.im/xmpp"

	"xmppbouncer/stanza"
)

func (n *negotiation) fastMechanisms() []string                                          { return nil }
func (n *negotiation) fastOffered(string) bool                                           { return false }
func (n *negotiation) fastAfterSuccess(context.Context, *stanza.Element) *stanza.Element { return nil }
func (n *negotiation) newFASTStepper(s *xmpp.Session, name string, el *stanza.Element) (stepper, string, string) {
	return nil, "invalid-mechanism", "mechanism " + name + " is not offered"
}
