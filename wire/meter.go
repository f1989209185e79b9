package wire

import (
	"errors"
	"net"
)

// ErrStanzaTooLarge is returned by a Meter's Read once the current stanza has
// used up its byte budget.
var ErrStanzaTooLarge = errors.New("wire: stanza exceeds the size limit")

// meterSlack covers the bytes that the TLS record layer (16 KiB) and the XML
// decoder's buffer (4 KiB) read ahead of the stanza being parsed, so a stanza
// just under the limit is never refused for its neighbour's bytes.
const meterSlack = 20 << 10

// Meter wraps the transport beneath mellium's decoder and counts the bytes
// read since the current stanza began. Wrap the raw TCP connection before
// any TLS, so the count is taken whatever the layers above do.
type Meter struct {
	net.Conn
	n, budget int64
}

// NewMeter wraps c.
func NewMeter(c net.Conn) *Meter { return &Meter{Conn: c} }

// Reset starts a new stanza with the given budget (0: unlimited). Only the
// reading goroutine calls it.
func (m *Meter) Reset(budget int64) {
	m.n = 0
	if budget > 0 {
		budget += meterSlack
	}
	m.budget = budget
}

// Count is how many bytes were read since the last Reset, read-ahead
// included. Only the reading goroutine calls it.
func (m *Meter) Count() int64 { return m.n }

func (m *Meter) Read(p []byte) (int, error) {
	if m.budget > 0 && m.n > m.budget {
		return 0, ErrStanzaTooLarge
	}
	n, err := m.Conn.Read(p)
	m.n += int64(n)
	return n, err
}
