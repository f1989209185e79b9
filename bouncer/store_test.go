package bouncer

import (
	"xmppbouncer/bouncer/admin"
	"xmppbouncer/sqlite"
)

// The embedded engine implements everything the core asks of a store,
// including the optional parts it finds by type assertion (which would
// otherwise switch off silently if a signature drifted).
var (
	_ Store           = (*sqlite.DB)(nil)
	_ FastTokenDB     = (*sqlite.DB)(nil)
	_ resumableStore  = (*sqlite.DB)(nil)
	_ upstreamSMStore = (*sqlite.DB)(nil)
	_ chatStore       = (*sqlite.DB)(nil)
	_ admin.Store     = (*sqlite.DB)(nil)
)
