// Package metrics serves xmppbouncer's Prometheus endpoint ([metrics]
// address). Every series is named xmppbouncer_….
//
// Counters kept as atomics by the parts (upstream traffic, stanzas, slow
// clients, auth failures, archive inserts) are read at scrape time. The
// loop's own state (clients by SM/CSI state, rooms) is read on the loop
// through bouncer.Snapshot, which gives up after a short wait rather than
// pile scrapes up behind a stuck loop; xmppbouncer_loop_responsive then
// says 0. Latencies are histograms fed by observers the parts call.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"xmppbouncer/bouncer"
	"xmppbouncer/listener"
	"xmppbouncer/sqlite"
	"xmppbouncer/upstream"
)

// Sources are the parts metrics read. Any may be nil except Bouncer.
type Sources struct {
	Bouncer  *bouncer.Bouncer
	Upstream *upstream.Client
	Archive  *sqlite.DB
	Listener *listener.Server
	Version  string
	// OfflineDepth reports how many messages wait in the offline store
	// for clients that are away; nil reads Archive.OfflineCount.
	OfflineDepth func(ctx context.Context) (int, error)
}

// Metrics is the registry with xmppbouncer's series.
type Metrics struct {
	reg *prometheus.Registry
}

// snapshotWait bounds how long a scrape waits for the loop.
const snapshotWait = 2 * time.Second

// New builds the registry and installs the latency observers on the
// bouncer and the archive; call it before the bouncer's Run.
func New(src Sources) *Metrics {
	if src.OfflineDepth == nil && src.Archive != nil {
		src.OfflineDepth = src.Archive.OfflineCount
	}
	reg := prometheus.NewRegistry()
	// No go_* or process_* collectors: every series is xmppbouncer_….

	loop := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "xmppbouncer_loop_event_seconds",
		Help:    "Time the bouncer's event loop took per event (a burst of upstream stanzas is one event).",
		Buckets: []float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1},
	})
	commit := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "xmppbouncer_archive_commit_seconds",
		Help:    "Time of each archive transaction, begin to commit.",
		Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1},
	})
	reg.MustRegister(loop, commit)
	src.Bouncer.SetObserver(loopObserver{loop})
	if src.Archive != nil {
		src.Archive.SetCommitObserver(func(d time.Duration, _ int) { commit.Observe(d.Seconds()) })
	}
	reg.MustRegister(&collector{src: src})
	return &Metrics{reg: reg}
}

type loopObserver struct{ h prometheus.Histogram }

func (o loopObserver) LoopEvent(d time.Duration) { o.h.Observe(d.Seconds()) }

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Listen opens the endpoint's socket, so that a bad address fails at
// start; Serve then serves /metrics on it until ctx is done.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics.address %s: %w", addr, err)
	}
	return ln, nil
}

// Serve serves /metrics on ln until ctx is done.
func (m *Metrics) Serve(ctx context.Context, ln net.Listener) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "xmppbouncer: metrics are at /metrics", http.StatusNotFound)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("xmppbouncer_"+name, help, labels, nil)
}

var (
	dBuild           = desc("build_info", "Version of xmppbouncer, Go and SQLite; always 1.", "version", "goversion", "sqlite")
	dUpConnected     = desc("upstream_connected", "1 while the upstream session is online.")
	dUpReconnects    = desc("upstream_reconnects_total", "Upstream sessions established after the first one.")
	dUpFailures      = desc("upstream_connect_failures_total", "Upstream connection attempts that failed.")
	dUpBytesIn       = desc("upstream_received_bytes_total", "Bytes read from the upstream server (TLS included).")
	dUpDropped       = desc("upstream_stanzas_dropped_total", "Stanzas from the upstream server past the bouncer's limits, dropped on their own while the session stayed up.")
	dUpBytesOut      = desc("upstream_sent_bytes_total", "Bytes written to the upstream server (TLS included).")
	dOutbox          = desc("upstream_outbox_messages", "Messages from local clients queued while upstream is down.")
	dClients         = desc("clients", "Local clients connected, by stream management (live, hibernated) and CSI (active, inactive) state.", "sm", "csi")
	dRooms           = desc("rooms", "Rooms by what holds them: joined (the account is in it upstream), claimed (a local client is in it), kept (stays without clients).", "state")
	dStanzas         = desc("stanzas_total", "Stanzas handled, by direction and kind.", "direction", "kind")
	dArchiveRows     = desc("archive_messages", "Messages in the archive.")
	dArchiveBytes    = desc("archive_bytes", "Size of the archive's database pages.")
	dArchiveInserts  = desc("archive_inserts_total", "Messages archived since start (duplicates not counted).")
	dQueue           = desc("loop_queue_depth", "Events waiting for the bouncer's loop.")
	dResponsive      = desc("loop_responsive", "1 if the loop answered the scrape in time; the loop-state series are missing when 0.")
	dSlow            = desc("slow_client_disconnects_total", "Local clients disconnected because they did not read fast enough.")
	dAuthFailures    = desc("auth_failures_total", "Failed SASL authentications of local clients.")
	dOfflineDepth    = desc("offline_store_messages", "Messages waiting in the offline store for clients that are away.")
	dRetentionSecond = desc("archive_retention_seconds", "Archive retention in force; 0 keeps everything.")
)

// collector reads everything that is not a histogram at scrape time.
type collector struct{ src Sources }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{dBuild, dUpConnected, dUpReconnects, dUpFailures, dUpBytesIn, dUpBytesOut, dUpDropped,
		dOutbox, dClients, dRooms, dStanzas, dArchiveRows, dArchiveBytes, dArchiveInserts, dQueue, dResponsive,
		dSlow, dAuthFailures, dOfflineDepth, dRetentionSecond} {
		ch <- d
	}
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v uint64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	b := c.src.Bouncer
	gauge(ch, dBuild, 1, c.src.Version, runtime.Version(), sqlite.Version())

	if up := c.src.Upstream; up != nil {
		st := up.Status()
		gauge(ch, dUpConnected, b2f(st.Connected))
		counter(ch, dUpReconnects, st.Reconnects)
		counter(ch, dUpFailures, st.Failures)
		counter(ch, dUpBytesIn, st.BytesIn)
		counter(ch, dUpBytesOut, st.BytesOut)
		counter(ch, dUpDropped, st.Dropped)
	}

	stats := b.Stats()
	for dir, dn := range bouncer.DirectionNames {
		for kind, kn := range bouncer.KindNames {
			counter(ch, dStanzas, stats.Stanzas(dir, kind), dn, kn)
		}
	}
	counter(ch, dSlow, stats.SlowDisconnects())
	gauge(ch, dQueue, float64(b.QueueDepth()))
	gauge(ch, dRetentionSecond, b.Retention().Seconds())
	if l := c.src.Listener; l != nil {
		counter(ch, dAuthFailures, l.AuthFailures())
	}
	ctx, cancel := context.WithTimeout(context.Background(), snapshotWait)
	defer cancel()
	if f := c.src.OfflineDepth; f != nil {
		if n, err := f(ctx); err == nil {
			gauge(ch, dOfflineDepth, float64(n))
		}
	}
	snap, err := b.Snapshot(ctx)
	gauge(ch, dResponsive, b2f(err == nil))
	if err == nil {
		gauge(ch, dOutbox, float64(snap.Outbox))
		for _, sm := range []string{"live", "hibernated"} {
			for _, csi := range []string{"active", "inactive"} {
				gauge(ch, dClients, float64(snap.Clients[bouncer.ClientState{SM: sm, CSI: csi}]), sm, csi)
			}
		}
		gauge(ch, dRooms, float64(snap.RoomsJoined), "joined")
		gauge(ch, dRooms, float64(snap.RoomsClaimed), "claimed")
		gauge(ch, dRooms, float64(snap.RoomsKept), "kept")
	}

	if db := c.src.Archive; db != nil {
		counter(ch, dArchiveInserts, db.Inserted())
		msgs, bytes, err := db.Size(ctx)
		if err == nil {
			gauge(ch, dArchiveRows, float64(msgs))
			gauge(ch, dArchiveBytes, float64(bytes))
		}
	}
}

func b2f(v bool) float64 {
	if v {
		return 1
	}
	return 0
}
