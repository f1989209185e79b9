package bouncer

// The ids the core makes up. Each kind has its own prefix, so an answer
// tells by its id alone which table it belongs to; none starts with the
// upstream package's own prefix (upstream.idPrefix), whose answers it
// keeps for itself.
const (
	idClientIQ   = "xb"       // a client's IQ rewritten on its way upstream (iqs.out)
	idUpstreamIQ = "xi"       // an upstream IQ handed to a client (iqs.in)
	idInternal   = "xc"       // the core's own IQ upstream (internal)
	idClientMAM  = "xq"       // a client's MAM queryid (iqs.mam)
	idGapFill    = "xm"       // a gap-fill MAM queryid (internalMAM)
	pushPrefix   = "xb-push-" // a roster or blocklist push, or caps query, to a client
)

// Timestamps the core writes (XEP-0082): milliseconds in <delay/> of
// replays and offline messages, microseconds in MAM results, whose order
// within a second matters to clients that sort by them.
const (
	stampFormat    = "2006-01-02T15:04:05.000Z"
	mamStampFormat = "2006-01-02T15:04:05.000000Z"
)
