// Command xbload is an end-to-end load tool for xmppbouncer (issue 9). It
// starts a throwaway Prosody and an in-process bouncer on loopback, joins
// K clients to one room through the bouncer and K sessions directly to
// Prosody, floods the room from another account and prints, for both
// paths: deliveries per second, latency percentiles, lost and duplicated
// messages and the bytes per room message on the account's link(s).
//
//	make load
//	go run -tags sqlite_fts5 ./cmd/xbload -clients 10 -rate 200 -duration 20s
//	go run -tags sqlite_fts5 ./cmd/xbload -rate 0 -json
//
// Latency is measured at each receiving client from a timestamp the flooder
// embeds in the body when it queues the message, so both paths share the
// flooder's own delays. The bouncer's upstream link and the direct
// sessions' links each pass through a counting TCP proxy on loopback (the
// same hop on both paths); -proxy=false removes both proxies and the byte
// counts.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"syscall"
	"time"

	"mellium.im/xmpp/jid"

	"xmppbouncer/bouncer"
	"xmppbouncer/config"
	"xmppbouncer/internal/testserver"
	"xmppbouncer/listener"
	"xmppbouncer/sqlite"
	"xmppbouncer/upstream"
)

const localPassword = "xbload-local"

type options struct {
	clients    int
	rate       float64
	duration   time.Duration
	messages   int
	size       int
	paths      string
	jsonOut    bool
	proxy      bool
	drain      time.Duration
	settle     time.Duration
	dataDir    string
	logLevel   string
	cpuProfile string
	prosodyLog string
	window     int
	transport  string
	idle       int
	idleChild  string
	memProfile string
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("xbload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.IntVar(&o.clients, "clients", 10, "receiving clients on each path")
	fs.Float64Var(&o.rate, "rate", 200, "room messages per second; 0 floods as fast as possible")
	fs.DurationVar(&o.duration, "duration", 20*time.Second, "how long to flood (unless -messages)")
	fs.IntVar(&o.messages, "messages", 0, "flood this many messages instead of for -duration")
	fs.IntVar(&o.size, "size", 64, "body bytes per message (at least the timestamp header)")
	fs.StringVar(&o.paths, "paths", "both", "which receivers: both, bouncer or direct")
	fs.BoolVar(&o.jsonOut, "json", false, "print the results as JSON")
	fs.BoolVar(&o.proxy, "proxy", true, "count link bytes through loopback TCP proxies (on both paths)")
	fs.DurationVar(&o.drain, "drain", 5*time.Second, "after the flood, wait this long without progress for late messages")
	fs.DurationVar(&o.settle, "settle", time.Second, "pause between the joins and the flood")
	fs.StringVar(&o.dataDir, "data", "", "bouncer data directory (default: a temporary one, removed)")
	fs.StringVar(&o.logLevel, "log", "warn", "bouncer log level to stderr: debug, info, warn, error or off")
	fs.IntVar(&o.window, "window", 20, "with -rate 0: at most this many messages sent and not yet received by the first receiver of each path (0: no limit, Prosody queues everything)")
	fs.StringVar(&o.prosodyLog, "prosody-log", "info", "Prosody's log level (debug slows it down a lot)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole process (bouncer included) during the flood")
	fs.StringVar(&o.transport, "transport", "c2s", "how the bouncer's clients connect: c2s, websocket (RFC 7395) or both (a path each, same run)")
	fs.IntVar(&o.idle, "idle", 0, "instead of a flood: measure the bouncer's memory per idle client, c2s and WebSocket, with this many of each")
	fs.StringVar(&o.idleChild, "idle-child", "", "(internal) run as the idle clients' process")
	fs.StringVar(&o.memProfile, "memprofile", "", "with -idle: write heap profiles FILE.c2s and FILE.websocket with the idle clients connected")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if o.clients < 1 || o.rate < 0 || o.size < 0 || (o.messages <= 0 && o.duration <= 0) {
		fmt.Fprintln(stderr, "xbload: need -clients ≥ 1, -rate ≥ 0, and a positive -duration or -messages")
		return 2
	}
	switch o.paths {
	case "both", "bouncer", "direct":
	default:
		fmt.Fprintln(stderr, "xbload: -paths is both, bouncer or direct")
		return 2
	}
	switch o.transport {
	case "c2s", "websocket", "both":
	default:
		fmt.Fprintln(stderr, "xbload: -transport is c2s, websocket or both")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.idleChild != "" {
		return idleChild(ctx, o.idleChild, stderr)
	}
	if o.idle > 0 {
		res, err := measureIdle(ctx, o, stderr)
		return report(stdout, stderr, o.jsonOut, res, err, func() { res.print(stdout) })
	}
	res, err := load(ctx, o, stderr)
	return report(stdout, stderr, o.jsonOut, res, err, func() { res.printTable(stdout) })
}

// report writes a run's result as JSON or as text, and returns the exit
// code.
func report(stdout, stderr io.Writer, jsonOut bool, res any, err error, text func()) int {
	if err != nil {
		fmt.Fprintln(stderr, "xbload:", err)
		return 1
	}
	if jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(res)
	} else {
		text()
	}
	return 0
}

// path is one way to the room: K receivers and the proxy on their link(s).
type path struct {
	name      string
	receivers []*session
	proxy     *countingProxy
	up0, dn0  int64
}

func load(ctx context.Context, o options, stderr io.Writer) (*result, error) {
	progress := func(format string, a ...any) { fmt.Fprintf(stderr, "xbload: "+format+"\n", a...) }

	srv, stopProsody, err := testserver.StartProcess(testserver.Options{LogLevel: o.prosodyLog})
	if err != nil {
		return nil, err
	}
	defer stopProsody()
	progress("prosody on %s (%s)", srv.Addr, srv.Dir)
	room := "load@" + srv.MUC
	failed := func(err error) error {
		return fmt.Errorf("%w\n--- tail of prosody's log:\n%s", err, srv.LogTail(20))
	}

	var closers []func()
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}()

	direct := &path{name: "direct"}
	bounce := &path{name: "bouncer"}
	bounceWS := &path{name: "bouncer-ws"}
	var paths []*path
	if o.paths != "direct" {
		if o.transport != "websocket" {
			paths = append(paths, bounce)
		}
		if o.transport != "c2s" {
			paths = append(paths, bounceWS)
		}
	}
	if o.paths != "bouncer" {
		paths = append(paths, direct)
	}
	linkAddr := func(p *path) (string, error) {
		if !o.proxy {
			return srv.Addr, nil
		}
		px, err := newCountingProxy(srv.Addr)
		if err != nil {
			return "", err
		}
		p.proxy = px
		closers = append(closers, px.close)
		return px.addr(), nil
	}

	// The flooder, bob, is the room's owner, straight on Prosody.
	flooder, err := dial(ctx, dialOpts{addr: srv.Addr, account: srv.JID(testserver.Bob), password: testserver.Password(testserver.Bob), resource: "flood", queue: 256}, "flooder", room)
	if err != nil {
		return nil, failed(err)
	}
	closers = append(closers, flooder.close)
	if err := flooder.join(ctx, "flood", 20*time.Second); err != nil {
		return nil, failed(err)
	}

	if o.paths != "direct" {
		// The bouncer's one upstream link is counted on its first path.
		counted := bounce
		if o.transport == "websocket" {
			counted = bounceWS
		}
		upAddr, err := linkAddr(counted)
		if err != nil {
			return nil, err
		}
		listen, wsURL, stopBouncer, err := startBouncer(ctx, o, srv, upAddr, stderr)
		if err != nil {
			return nil, err
		}
		closers = append(closers, stopBouncer)
		progress("bouncer for %s listening on %s and %s", srv.JID(testserver.Alice), listen, wsURL)
		for i := range o.clients {
			if o.transport == "websocket" {
				break
			}
			s, err := dial(ctx, dialOpts{addr: listen, account: srv.JID(testserver.Alice), password: localPassword, resource: fmt.Sprintf("load%d", i), queue: 64}, fmt.Sprintf("bouncer#%d", i), room)
			if err != nil {
				return nil, failed(err)
			}
			closers = append(closers, s.close)
			// The first join also waits for the bouncer to come online upstream.
			if err := s.join(ctx, "alice", 30*time.Second); err != nil {
				return nil, failed(err)
			}
			bounce.receivers = append(bounce.receivers, s)
		}
		for i := range o.clients {
			if o.transport == "c2s" {
				break
			}
			s, err := dialWS(ctx, wsURL, dialOpts{account: srv.JID(testserver.Alice), password: localPassword, resource: fmt.Sprintf("ws%d", i), queue: 64}, fmt.Sprintf("bouncer-ws#%d", i), room)
			if err != nil {
				return nil, failed(err)
			}
			closers = append(closers, s.close)
			if err := s.join(ctx, "alice", 30*time.Second); err != nil {
				return nil, failed(err)
			}
			bounceWS.receivers = append(bounceWS.receivers, s)
		}
	}
	if o.paths != "bouncer" {
		addr, err := linkAddr(direct)
		if err != nil {
			return nil, err
		}
		for i := range o.clients {
			s, err := dial(ctx, dialOpts{addr: addr, account: srv.JID(testserver.Carol), password: testserver.Password(testserver.Carol), resource: fmt.Sprintf("load%d", i), queue: 64}, fmt.Sprintf("direct#%d", i), room)
			if err != nil {
				return nil, failed(err)
			}
			closers = append(closers, s.close)
			if err := s.join(ctx, "carol", 20*time.Second); err != nil {
				return nil, failed(err)
			}
			direct.receivers = append(direct.receivers, s)
		}
	}
	progress("%d receivers per path joined %s; flooding", o.clients, room)
	select {
	case <-time.After(o.settle):
	case <-ctx.Done():
		return nil, ctx.Err()
	}

	for _, p := range paths {
		if p.proxy != nil {
			p.up0, p.dn0 = p.proxy.bytes()
		}
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, err
		}
		stopProfile := func() { pprof.StopCPUProfile(); f.Close() }
		defer stopProfile()
	}

	start := time.Now()
	var sentinels []*session
	for _, p := range paths {
		sentinels = append(sentinels, p.receivers[0])
	}
	sent, err := flood(ctx, o, flooder, room, sentinels)
	floodEnd := time.Now()
	if err != nil {
		return nil, failed(err)
	}
	progress("sent %d messages in %v; waiting for deliveries", sent, floodEnd.Sub(start).Round(time.Millisecond))
	drainUntil(ctx, paths, sent, o.drain)

	res := &result{
		Clients: o.clients, Rate: o.rate, Size: o.size, Sent: sent,
		FloodSeconds: floodEnd.Sub(start).Seconds(),
	}
	res.SendRate = float64(sent) / res.FloodSeconds
	for _, p := range paths {
		res.Paths = append(res.Paths, p.stats(start, sent))
	}
	if o.paths == "both" {
		res.Added = added(paths[0], direct, sent)
		if len(paths) == 3 {
			res.AddedWS = added(paths[1], direct, sent)
		}
	}
	return res, nil
}

// flood sends -messages messages, or for -duration, at -rate per second
// (0: as fast as the flooder's queue takes them).
func flood(ctx context.Context, o options, f *session, room string, sentinels []*session) (uint64, error) {
	behind := func(seq uint64) bool {
		for _, s := range sentinels {
			if seq > uint64(s.received())+uint64(o.window) {
				return true
			}
		}
		return false
	}
	start := time.Now()
	var seq uint64
	for {
		if o.messages > 0 && seq >= uint64(o.messages) {
			return seq, nil
		}
		if o.messages <= 0 && time.Since(start) >= o.duration {
			return seq, nil
		}
		if ctx.Err() != nil {
			return seq, ctx.Err()
		}
		if o.rate > 0 {
			next := start.Add(time.Duration(float64(seq) * float64(time.Second) / o.rate))
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			}
		} else if o.window > 0 && behind(seq) {
			time.Sleep(100 * time.Microsecond)
			continue
		}
		// Rebuilt on each try so the timestamp is when it was queued.
		for !f.conn.Send(floodMessage(room, seq, o.size)) {
			if f.closed() {
				return seq, fmt.Errorf("flooder: the stream ended: %v", f.conn.Err())
			}
			if o.messages <= 0 && time.Since(start) >= o.duration {
				return seq, nil // Prosody stopped reading the flooder
			}
			time.Sleep(100 * time.Microsecond)
		}
		seq++
	}
}

// drainUntil waits until every receiver has every message, or nothing new
// arrived for quiet.
func drainUntil(ctx context.Context, paths []*path, sent uint64, quiet time.Duration) {
	lastTotal, lastChange := -1, time.Now()
	for {
		total, want := 0, 0
		for _, p := range paths {
			for _, r := range p.receivers {
				total += r.received()
				want += int(sent)
			}
		}
		if total >= want {
			return
		}
		if total != lastTotal {
			lastTotal, lastChange = total, time.Now()
		}
		if time.Since(lastChange) > quiet {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// startBouncer runs the bouncer for alice in this process, as
// cmd/xmppbouncer does, with its upstream link to upAddr.
func startBouncer(ctx context.Context, o options, srv *testserver.Server, upAddr string, stderr io.Writer) (listen, wsURL string, stop func(), err error) {
	dataDir := o.dataDir
	removeDir := false
	if dataDir == "" {
		if dataDir, err = os.MkdirTemp("", "xbload-bouncer-"); err != nil {
			return "", "", nil, err
		}
		removeDir = true
	} else if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", "", nil, err
	}
	cleanupDir := func() {
		if removeDir {
			os.RemoveAll(dataDir)
		}
	}
	cfg := &config.Config{}
	cfg.Upstream = config.Upstream{JID: srv.JID(testserver.Alice), Password: testserver.Password(testserver.Alice),
		Address: upAddr, TLS: "starttls", CAFile: srv.CAFile, Resource: "bouncer"}
	cfg.Listen = config.Listen{Address: "127.0.0.1:0", WebSocketAddress: "127.0.0.1:0"}
	cfg.Auth.Password = localPassword
	cfg.Storage.Path = filepath.Join(dataDir, "bouncer.db")
	cfg.Log.Level = o.logLevel
	cfg.Defaults()
	if o.idle > 0 {
		// Room for every idle client from one address.
		cfg.Limits.MaxConnections = 2*o.idle + 16
		cfg.Limits.MaxConnectionsPerAddress = 2*o.idle + 16
		cfg.Limits.MaxUnauthenticatedPerAddress = 2*o.idle + 16
	}

	log := slog.New(slog.DiscardHandler)
	if o.logLevel != "off" {
		var l slog.Level
		if err := l.UnmarshalText([]byte(o.logLevel)); err != nil {
			cleanupDir()
			return "", "", nil, fmt.Errorf("-log: %w", err)
		}
		log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: l}))
	}
	bctx, cancel := context.WithCancel(ctx)
	db, err := sqlite.Open(bctx, cfg.Storage.Path)
	if err != nil {
		cancel()
		cleanupDir()
		return "", "", nil, fmt.Errorf("open archive %s: %w", cfg.Storage.Path, err)
	}
	account, _ := jid.Parse(cfg.Upstream.JID)
	b := bouncer.New(bouncer.Options{
		Account: account, Config: cfg, Logger: log, Archive: db, Version: "xbload",
		OutboxLimit: cfg.Upstream.OutboxLimit, IQTimeout: cfg.Upstream.IQTimeout.Duration,
	})
	fail := func(err error) (string, string, func(), error) {
		cancel()
		db.Close()
		cleanupDir()
		return "", "", nil, err
	}
	ucfg, err := upstream.ConfigFrom(&cfg.Upstream)
	if err != nil {
		return fail(err)
	}
	ucfg.Logger = log.With("part", "upstream")
	up := upstream.New(ucfg, b.UpstreamHandler())
	b.SetUpstream(up)
	lcfg, err := listener.ConfigFrom(cfg, dataDir, log.With("part", "listener"))
	if err != nil {
		return fail(err)
	}
	lsrv, err := listener.New(lcfg, b.ClientHandler())
	if err != nil {
		return fail(err)
	}
	if err := lsrv.Listen(); err != nil {
		return fail(err)
	}
	done := make(chan struct{})
	go b.Run(bctx)
	go up.Run(bctx)
	go func() { _ = lsrv.Serve(bctx); close(done) }()
	stop = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
		time.Sleep(100 * time.Millisecond) // let the loop finish its last write
		db.Close()
		cleanupDir()
	}
	return lsrv.Addr().String(), "wss://" + lsrv.WebSocketAddr().String() + listener.WebSocketPath, stop, nil
}
