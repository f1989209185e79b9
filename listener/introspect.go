package listener

// ConnectionsFrom is how many connections from ip hold one of its
// address's slots (limits.max_connections_per_address): a dropped
// connection's slot is released once its handler has finished, just after
// the session hibernates. Safe from any goroutine.
func (s *Server) ConnectionsFrom(ip string) int {
	s.amu.Lock()
	defer s.amu.Unlock()
	if a := s.addrs[ip]; a != nil {
		return a.conns
	}
	return 0
}
