package listener

import "mellium.im/xmpp"

func (n *negotiation) newSCRAMPlus(s *xmpp.Session, name string) stepper { return nil }
func (n *negotiation) newSCRAM(s *xmpp.Session, name string) stepper     { return nil }
