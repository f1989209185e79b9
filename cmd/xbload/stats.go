package main

import (
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"
)

// result is what one run measured.
type result struct {
	Clients      int         `json:"clients"`
	Rate         float64     `json:"rate"` // requested; 0 = as fast as possible
	Size         int         `json:"size"`
	Sent         uint64      `json:"sent"`
	FloodSeconds float64     `json:"flood_seconds"`
	SendRate     float64     `json:"send_rate"` // achieved, messages/s
	Paths        []pathStats `json:"paths"`
	// Added compares the paths message by message: when the last of the
	// bouncer's clients had it minus when the last direct session had it.
	Added *addedStats `json:"bouncer_minus_direct,omitempty"`
	// AddedWS is the same for the bouncer's WebSocket clients, when both
	// transports ran (-transport both).
	AddedWS *addedStats `json:"bouncer_ws_minus_direct,omitempty"`
}

// addedStats are percentiles, in milliseconds, of a per-message difference
// between the paths, over the messages every receiver got.
type addedStats struct {
	Messages int     `json:"messages"`
	P50ms    float64 `json:"p50_ms"`
	P99ms    float64 `json:"p99_ms"`
	Maxms    float64 `json:"max_ms"`
}

// lastCopy returns, per message, when the last receiver of p had it (0 if
// one never did).
func (p *path) lastCopy(sent uint64) []int64 {
	out := make([]int64, sent)
	for _, r := range p.receivers {
		r.mu.Lock()
		for i := range out {
			var at int64
			if i < len(r.firstAt) {
				at = r.firstAt[i]
			}
			switch {
			case at == 0 || out[i] < 0:
				out[i] = -1
			case at > out[i]:
				out[i] = at
			}
		}
		r.mu.Unlock()
	}
	return out
}

func added(bouncer, direct *path, sent uint64) *addedStats {
	b, d := bouncer.lastCopy(sent), direct.lastCopy(sent)
	var diff []int64
	for i := range b {
		if b[i] > 0 && d[i] > 0 {
			diff = append(diff, b[i]-d[i])
		}
	}
	if len(diff) == 0 {
		return nil
	}
	slices.Sort(diff)
	q := func(f float64) float64 { return float64(diff[int(f*float64(len(diff)-1))]) / 1e6 }
	return &addedStats{Messages: len(diff), P50ms: q(0.5), P99ms: q(0.99), Maxms: q(1)}
}

// pathStats are one path's figures. Latencies are in milliseconds.
type pathStats struct {
	Path          string  `json:"path"`
	Receivers     int     `json:"receivers"`
	Disconnected  int     `json:"disconnected"` // receivers whose stream ended during the run
	Expected      uint64  `json:"expected"`     // sent × receivers
	Delivered     uint64  `json:"delivered"`    // distinct (receiver, message) pairs
	Lost          uint64  `json:"lost"`
	Duplicated    uint64  `json:"duplicated"`
	Delayed       int     `json:"delayed"` // flood messages received as delayed history, not counted
	DeliveriesPS  float64 `json:"deliveries_per_s"`
	P50ms         float64 `json:"p50_ms"`
	P90ms         float64 `json:"p90_ms"`
	P99ms         float64 `json:"p99_ms"`
	P999ms        float64 `json:"p999_ms"`
	Maxms         float64 `json:"max_ms"`
	LinkUp        int64   `json:"link_bytes_up,omitempty"`   // client → Prosody during the flood, over all the path's links
	LinkDown      int64   `json:"link_bytes_down,omitempty"` // Prosody → client
	LinkLinks     int64   `json:"links,omitempty"`           // TCP connections on the path's proxy
	BytesPerMsg   float64 `json:"link_bytes_per_msg,omitempty"`
	DownPerMsg    float64 `json:"link_down_bytes_per_msg,omitempty"`
	Counted       bool    `json:"link_counted"`
	LastDelivered float64 `json:"last_delivery_s"` // after the flood started
}

func (p *path) stats(start time.Time, sent uint64) pathStats {
	st := pathStats{Path: p.name, Receivers: len(p.receivers), Expected: sent * uint64(len(p.receivers))}
	var lat []int64
	var last time.Time
	for _, r := range p.receivers {
		if r.closed() {
			st.Disconnected++
		}
		r.mu.Lock()
		for i := uint64(0); i < sent; i++ {
			var c uint16
			if i < uint64(len(r.counts)) {
				c = r.counts[i]
			}
			switch {
			case c == 0:
				st.Lost++
			default:
				st.Delivered++
				st.Duplicated += uint64(c - 1)
			}
		}
		lat = append(lat, r.lat...)
		st.Delayed += r.delayed
		if r.last.After(last) {
			last = r.last
		}
		r.mu.Unlock()
	}
	if !last.IsZero() {
		el := last.Sub(start)
		st.LastDelivered = el.Seconds()
		if el > 0 {
			st.DeliveriesPS = float64(st.Delivered) / el.Seconds()
		}
	}
	slices.Sort(lat)
	q := func(f float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		i := int(f * float64(len(lat)-1))
		return float64(lat[i]) / 1e6
	}
	st.P50ms, st.P90ms, st.P99ms, st.P999ms, st.Maxms = q(0.50), q(0.90), q(0.99), q(0.999), q(1)
	if p.proxy != nil {
		up, dn := p.proxy.bytes()
		st.Counted = true
		st.LinkUp, st.LinkDown = up-p.up0, dn-p.dn0
		st.LinkLinks = p.proxy.conns.Load()
		if sent > 0 {
			st.BytesPerMsg = float64(st.LinkUp+st.LinkDown) / float64(sent)
			st.DownPerMsg = float64(st.LinkDown) / float64(sent)
		}
	}
	return st
}

func (r *result) printTable(w io.Writer) {
	rate := fmt.Sprintf("%g msg/s", r.Rate)
	if r.Rate == 0 {
		rate = "as fast as possible"
	}
	fmt.Fprintf(w, "%d clients per path, rate %s, body %d B: sent %d messages in %.2f s (%.0f msg/s)\n\n",
		r.Clients, rate, r.Size, r.Sent, r.FloodSeconds, r.SendRate)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "path\tdeliveries/s\tp50 ms\tp99 ms\tp99.9 ms\tmax ms\tlost\tdup\tdropped clients\tlink B/msg (down)\t")
	for _, p := range r.Paths {
		link := "-"
		if p.Counted {
			link = fmt.Sprintf("%.0f (%.0f)", p.BytesPerMsg, p.DownPerMsg)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%d\t%d\t%d\t%s\t\n",
			p.Path, p.DeliveriesPS, p.P50ms, p.P99ms, p.P999ms, p.Maxms, p.Lost, p.Duplicated, p.Disconnected, link)
	}
	tw.Flush()
	if a := r.Added; a != nil {
		fmt.Fprintf(w, "\nper message, last %s client minus last direct session (%d messages): p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
			r.Paths[0].Path, a.Messages, a.P50ms, a.P99ms, a.Maxms)
	}
	if a := r.AddedWS; a != nil {
		fmt.Fprintf(w, "per message, last bouncer-ws client minus last direct session (%d messages): p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
			a.Messages, a.P50ms, a.P99ms, a.Maxms)
	}
	fmt.Fprintln(w, "\nlink B/msg: bytes on the path's link(s) to Prosody during the flood, both directions, per room message;")
	fmt.Fprintln(w, "the bouncer has one upstream link (counted on its first path), the direct path one per session.")
}
