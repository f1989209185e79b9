// Command xmppbouncer is a personal XMPP bouncer: one upstream session to
// your account, many local clients, every room archived.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"xmppbouncer/bouncer"
	"xmppbouncer/config"
	"xmppbouncer/listener"
	"xmppbouncer/metrics"
	"xmppbouncer/sqlite"
	"xmppbouncer/upstream"

	"mellium.im/xmpp/jid"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

const usage = `xmppbouncer: a personal XMPP bouncer.

Usage:
  xmppbouncer -config FILE              run the bouncer
  xmppbouncer check-config -config FILE validate a config file and explain it
  xmppbouncer check-db -config FILE     check the database for damage (PRAGMA quick_check); also -db PATH
  xmppbouncer hash-password             read a password on stdin, print auth.password_hash
  xmppbouncer -version                  print the version

Flags:
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "hash-password":
			return hashPassword(stdin, stdout, stderr)
		case "check-config":
			return checkConfig(args[1:], stdout, stderr)
		case "check-db":
			return checkDB(args[1:], stdout, stderr)
		}
	}
	fs := flag.NewFlagSet("xmppbouncer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "path to the TOML config file")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *showVersion {
		fmt.Fprintf(stdout, "xmppbouncer %s\n%s %s/%s\nSQLite %s\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH, sqlite.Version())
		return 0
	}
	if *cfgPath == "" {
		fmt.Fprintln(stderr, "xmppbouncer: -config FILE is required (see config.example.toml, or `make demo` for a try-out)")
		return 2
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, "xmppbouncer: config:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, cfg, stderr); err != nil {
		fmt.Fprintln(stderr, "xmppbouncer:", err)
		return 1
	}
	return 0
}

func newLogger(level string, w io.Writer) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}

// serve wires the parts together and runs until ctx is done.
func serve(ctx context.Context, cfg *config.Config, logw io.Writer) error {
	log := newLogger(cfg.Log.Level, logw)
	for _, w := range cfg.Warnings {
		log.Warn("config: " + w)
	}
	account, _ := jid.Parse(cfg.Upstream.JID)
	dataDir := filepath.Dir(cfg.Storage.Path)
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("create data directory %s: %w", dataDir, sqlite.ExplainFSError(err))
	}
	unlock, err := lockDatabase(cfg.Storage.Path)
	if err != nil {
		return err
	}
	defer unlock()
	db, err := sqlite.Open(ctx, cfg.Storage.Path)
	if errors.Is(err, sqlite.ErrCorrupt) {
		var ce *sqlite.CorruptError
		errors.As(err, &ce)
		return fmt.Errorf("refusing to start: %w; %s", ce, sqlite.RecoveryHint(cfg.Storage.Path))
	}
	if err != nil {
		return fmt.Errorf("open archive %s: %w", cfg.Storage.Path, err)
	}
	defer db.Close()

	b := bouncer.New(bouncer.Options{
		Account:     account,
		Config:      cfg,
		Logger:      log,
		Archive:     db,
		Version:     version,
		OutboxLimit: cfg.Upstream.OutboxLimit,
		IQTimeout:   cfg.Upstream.IQTimeout.Duration,
	})
	upCfg, err := upstream.ConfigFrom(&cfg.Upstream)
	if err != nil {
		return err
	}
	upCfg.Logger = log.With("part", "upstream")
	up := upstream.New(upCfg, b.UpstreamHandler())
	b.SetUpstream(up)

	lcfg, err := listener.ConfigFrom(cfg, dataDir, log.With("part", "listener"))
	if err != nil {
		return err
	}
	lcfg.FastTokens = bouncer.FastTokenStore(db) // XEP-0484 tokens survive restarts
	srv, err := listener.New(lcfg, b.ClientHandler())
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		return err
	}
	var side sync.WaitGroup // goroutines started here that end with ctx
	if addr := cfg.Metrics.Address; addr != "" {
		m := metrics.New(metrics.Sources{Bouncer: b, Upstream: up, Archive: db, Listener: srv, Version: version})
		ln, err := metrics.Listen(addr)
		if err != nil {
			return err
		}
		log.Info("metrics endpoint", "url", "http://"+ln.Addr().String()+"/metrics")
		side.Add(1)
		go func() {
			defer side.Done()
			if err := m.Serve(ctx, ln); err != nil {
				log.Error("metrics endpoint failed", "err", err)
			}
		}()
	}
	log.Info("xmppbouncer started", "version", version, "account", account.String(), "listen", srv.Addr().String())

	// The loop and the upstream session outlive ctx: on shutdown they stop
	// in order, after the local clients are gone.
	loopCtx, stopLoop := context.WithCancel(context.WithoutCancel(ctx))
	upCtx, stopUp := context.WithCancel(context.WithoutCancel(ctx))
	defer stopLoop()
	defer stopUp()
	loopDone, upDone := make(chan struct{}), make(chan struct{})
	go func() { b.Run(loopCtx); close(loopDone) }()
	go func() { up.Run(upCtx); close(upDone) }()
	side.Add(1)
	go func() { defer side.Done(); b.RunPruner(ctx) }() // [history] retention, or what the history command set

	// 1. Stop accepting; close every client's stream with system-shutdown
	// and wait for them.
	err = srv.Serve(ctx)
	log.Info("shutdown: local clients closed; closing the upstream session")
	// 2. End the upstream stream: the server broadcasts our unavailable.
	stopUp()
	waitFor(log, upDone, 5*time.Second, "the upstream session")
	// 3. Stop the loop: it saves the clients' cursors and drains the
	// archive writer.
	log.Info("shutdown: draining the archive")
	stopLoop()
	waitFor(log, loopDone, 15*time.Second, "the archive writer")
	side.Wait()
	// 4. The deferred db.Close checkpoints the WAL.
	log.Info("shutdown: closing the database")
	return err
}

// waitFor waits for done, at most d, and says so when it gives up.
func waitFor(log *slog.Logger, done <-chan struct{}, d time.Duration, what string) {
	select {
	case <-done:
	case <-time.After(d):
		log.Error("shutdown: gave up waiting for " + what)
	}
}

func checkConfig(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "path to the TOML config file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *cfgPath == "" {
		fmt.Fprintln(stderr, "check-config: -config FILE is required")
		return 2
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, "config:", err)
		return 2
	}
	fmt.Fprintf(stdout, "%s is valid.\n", *cfgPath)
	for _, w := range cfg.Warnings {
		fmt.Fprintf(stdout, "  warning: %s\n", w)
	}
	fmt.Fprintf(stdout, "  upstream: %s via %s (%s), resource %q\n", cfg.Upstream.JID, orDefault(cfg.Upstream.Address, "SRV lookup"), cfg.Upstream.TLS, cfg.Upstream.Resource)
	fmt.Fprintf(stdout, "  local clients: STARTTLS on %s", cfg.Listen.Address)
	if cfg.Listen.DirectTLSAddress != "" {
		fmt.Fprintf(stdout, ", direct TLS on %s", cfg.Listen.DirectTLSAddress)
	}
	if a := cfg.Listen.WebSocketAddress; a != "" {
		scheme := "wss"
		if cfg.Listen.WebSocketPlain {
			scheme = "ws"
		}
		fmt.Fprintf(stdout, ", WebSocket on %s://%s/xmpp-websocket", scheme, a)
		if cfg.Web.Root != "" {
			fmt.Fprintf(stdout, " with the web client from %s", cfg.Web.Root)
		}
	}
	fmt.Fprintln(stdout)
	fmt.Fprintf(stdout, "  certificate: %s\n", orDefault(cfg.Listen.CertFile, "self-signed, generated in the data directory"))
	fmt.Fprintf(stdout, "  archive: %s (retention %s)\n", cfg.Storage.Path, cfg.History.Retention)
	for _, r := range cfg.Rooms {
		fmt.Fprintf(stdout, "  room: %s as %s (autojoin %v)\n", r.JID, r.Nick, r.Autojoin)
	}
	return 0
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func hashPassword(stdin io.Reader, stdout, stderr io.Writer) int {
	if f, ok := stdin.(*os.File); ok && isTerminal(f) {
		// Hide the typed password; stty is on every system with a terminal.
		fmt.Fprint(stderr, "Password: ")
		if stty(f, "-echo") == nil {
			defer func() { _ = stty(f, "echo"); fmt.Fprintln(stderr) }()
		}
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		fmt.Fprintln(stderr, "hash-password:", err)
		return 1
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		fmt.Fprintln(stderr, "hash-password: empty password")
		return 2
	}
	h, err := listener.HashPassword(pw)
	if err != nil {
		fmt.Fprintln(stderr, "hash-password:", err)
		return 1
	}
	fmt.Fprintln(stdout, h)
	return 0
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func stty(tty *os.File, arg string) error {
	cmd := exec.Command("stty", arg)
	cmd.Stdin = tty
	return cmd.Run()
}
