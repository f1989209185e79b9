// Package config loads and validates xmppbouncer's TOML configuration.
// Every error names the key at fault, so check-config can print it as one
// line.
package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"mellium.im/xmpp/jid"
)

// Config is the whole file.
type Config struct {
	Upstream Upstream `toml:"upstream"`
	Listen   Listen   `toml:"listen"`
	Auth     Auth     `toml:"auth"`
	Storage  Storage  `toml:"storage"`
	Presence Presence `toml:"presence"`
	History  History  `toml:"history"`
	Offline  Offline  `toml:"offline"`
	Limits   Limits   `toml:"limits"`
	Log      Log      `toml:"log"`
	Push     Push     `toml:"push"`
	Metrics  Metrics  `toml:"metrics"`
	Rooms    []Room   `toml:"rooms"`
	Web      Web      `toml:"web"`

	// Warnings are problems Load found that do not stop the bouncer, such
	// as a secret in a file others can read; the caller logs them.
	Warnings []string `toml:"-"`
}

// Metrics is the optional Prometheus endpoint.
type Metrics struct {
	Address     string `toml:"address"`      // "" = off
	AllowRemote bool   `toml:"allow_remote"` // needed for a non-loopback address
}

// Upstream is the one session to the user's real account.
type Upstream struct {
	JID                   string   `toml:"jid"`
	Password              string   `toml:"password"`
	PasswordFile          string   `toml:"password_file"`
	Address               string   `toml:"address"`
	TLS                   string   `toml:"tls"`
	TLSInsecureSkipVerify bool     `toml:"tls_insecure_skip_verify"`
	CAFile                string   `toml:"ca_file"`
	Resource              string   `toml:"resource"`
	PingInterval          Duration `toml:"ping_interval"`
	PingTimeout           Duration `toml:"ping_timeout"`
	// OutboxLimit is how many messages local clients send while upstream
	// is down are kept, in order, for when it is back.
	OutboxLimit int `toml:"outbox_limit"`
	// SendQueue is how many stanzas may wait for the upstream socket
	// while the session is up.
	SendQueue int `toml:"send_queue"`
	// QueueLimit is the old key that sized both; the new keys win.
	QueueLimit int      `toml:"queue_limit"`
	IQTimeout  Duration `toml:"iq_timeout"`
}

// Listen is the local c2s server.
type Listen struct {
	Address          string `toml:"address"`
	DirectTLSAddress string `toml:"direct_tls_address"`
	CertFile         string `toml:"cert_file"`
	KeyFile          string `toml:"key_file"`
	// XMPP over WebSocket (RFC 7395) and the web client; see web.go.
	WebSocketAddress string   `toml:"websocket_address"` // "" = off
	WebSocketPlain   bool     `toml:"websocket_plain"`   // ws:// without TLS: loopback only
	WebSocketOrigins []string `toml:"websocket_origins"` // allowed Origin values; default: our own
}

// Auth is how local clients prove they are the account owner.
type Auth struct {
	PasswordHash string `toml:"password_hash"`
	Password     string `toml:"password"`
	// FastTokenLifetime is how long a XEP-0484 FAST token lets a device
	// log in without the password (default 720h, 30 days).
	FastTokenLifetime Duration `toml:"fast_token_lifetime"`
}

// Storage is where the archive and state live.
type Storage struct {
	Path string `toml:"path"`
}

// Presence is what upstream sees when no local client is connected.
type Presence struct {
	DetachedShow   string `toml:"detached_show"`
	DetachedStatus string `toml:"detached_status"`
	// QuitGrace: a room leave followed this soon by the end of the client's
	// session (or its unavailable presence) is a disconnect, not a leave.
	QuitGrace Duration `toml:"quit_grace"`
}

// History configures the room archive and its replay.
type History struct {
	Retention     string   `toml:"retention"`
	DefaultReplay int      `toml:"default_replay"`
	MAMMaxPage    int      `toml:"mam_max_page"`
	CatchupStart  Duration `toml:"catchup_start"`
	// ReplayMax and ReplayMaxAge cap the catch-up replay of a plain join
	// from a resource seen before (everything after its cursor).
	ReplayMax          int    `toml:"replay_max"`
	ReplayMaxAge       string `toml:"replay_max_age"`
	RetentionPeriod    time.Duration
	ReplayMaxAgePeriod time.Duration
}

// Offline bounds the store of messages that arrive while no local client
// is available (XEP-0160).
type Offline struct {
	MaxMessages     int    `toml:"max_messages"`
	Retention       string `toml:"retention"`
	RetentionPeriod time.Duration
}

// Limits protect the bouncer from its local clients.
type Limits struct {
	MaxStanzaBytes int64    `toml:"max_stanza_bytes"`
	MaxDepth       int      `toml:"max_depth"`
	IdleTimeout    Duration `toml:"idle_timeout"`
	KeepAlive      Duration `toml:"keepalive"`
	MaxConnections int      `toml:"max_connections"`
	// Per remote address, so one address cannot lock out the others.
	MaxConnectionsPerAddress     int      `toml:"max_connections_per_address"`
	MaxUnauthenticatedPerAddress int      `toml:"max_unauthenticated_per_address"`
	PreAuthTimeout               Duration `toml:"preauth_timeout"`
	QueueLen                     int      `toml:"queue_len"`
	AuthFailDelay                Duration `toml:"auth_fail_delay"`
	// XEP-0198 stream management of local clients.
	AckAfter      int      `toml:"ack_after"`      // <r/> after this many unacked stanzas
	AckDelay      Duration `toml:"ack_delay"`      // or this long after unacked output
	ResumeTimeout Duration `toml:"resume_timeout"` // a hibernated session waits this long
	ResumeQueue   int      `toml:"resume_queue"`   // unacked stanzas kept per session
	// Hibernated sessions kept, in all and per remote address; past a cap
	// the oldest expires early.
	MaxHibernated           int `toml:"max_hibernated"`
	MaxHibernatedPerAddress int `toml:"max_hibernated_per_address"`
}

// Log configures logging.
type Log struct {
	Level string `toml:"level"`
}

// Room is a room the account keeps joined.
type Room struct {
	JID      string `toml:"jid"`
	Nick     string `toml:"nick"`
	Password string `toml:"password"`
	Autojoin bool   `toml:"autojoin"`
}

// Duration is a TOML string such as "30s" or "5m".
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("not a duration (try \"30s\" or \"5m\"): %q", b)
	}
	d.Duration = v
	return nil
}

// Error is a configuration problem with the key it concerns.
type Error struct {
	Key string
	Msg string
}

func (e *Error) Error() string { return e.Key + ": " + e.Msg }

func bad(key, format string, args ...any) error {
	return &Error{Key: key, Msg: fmt.Sprintf(format, args...)}
}

// Load reads, defaults and validates the file at path.
func Load(path string) (*Config, error) {
	var c Config
	md, err := toml.DecodeFile(path, &c)
	if err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) && perr.LastKey != "" {
			return nil, fmt.Errorf("%s: line %d: %s: %s", path, perr.Position.Line, perr.LastKey, perr.Message)
		}
		if errors.As(err, &perr) {
			return nil, fmt.Errorf("%s: line %d: %s", path, perr.Position.Line, perr.Message)
		}
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: no such file (copy config.example.toml to start)", path)
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		return nil, bad(und[0].String(), "unknown key (see config.example.toml for the keys there are)")
	}
	inline := c.Upstream.Password != "" || c.Auth.Password != ""
	if err := c.finish(); err != nil {
		return nil, err
	}
	if inline {
		// upstream.password_file is refused when others can read it; an
		// inline password in the config file deserves the same care, but
		// only a warning, so existing setups keep starting.
		if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
			c.Warnings = append(c.Warnings, fmt.Sprintf("%s holds a password and is readable by others (mode %04o); run chmod 600 %s, or move upstream.password to upstream.password_file", path, st.Mode().Perm(), path))
		}
	}
	return &c, nil
}

// Defaults fills unset values; Load calls it before validating.
func (c *Config) Defaults() {
	u := &c.Upstream
	if u.TLS == "" {
		u.TLS = "starttls"
	}
	if u.Resource == "" {
		u.Resource = "bouncer"
	}
	if u.PingInterval.Duration == 0 {
		u.PingInterval.Duration = 60 * time.Second
	}
	if u.PingTimeout.Duration == 0 {
		u.PingTimeout.Duration = 30 * time.Second
	}
	if u.QueueLimit == 0 {
		u.QueueLimit = 1000
	}
	if u.OutboxLimit == 0 {
		u.OutboxLimit = u.QueueLimit
	}
	if u.SendQueue == 0 {
		u.SendQueue = u.QueueLimit
	}
	if u.IQTimeout.Duration == 0 {
		u.IQTimeout.Duration = 2 * time.Minute
	}
	if c.Listen.Address == "" {
		c.Listen.Address = "127.0.0.1:5222"
	}
	if c.Storage.Path == "" {
		c.Storage.Path = "xmppbouncer.db"
	}
	if c.Presence.DetachedShow == "" {
		c.Presence.DetachedShow = "away"
	}
	h := &c.History
	if h.Retention == "" {
		h.Retention = "0"
	}
	if h.DefaultReplay == 0 {
		h.DefaultReplay = 20
	}
	if h.MAMMaxPage == 0 {
		h.MAMMaxPage = 250
	}
	if h.CatchupStart.Duration == 0 {
		h.CatchupStart.Duration = 24 * time.Hour
	}
	if h.ReplayMax == 0 {
		h.ReplayMax = 1000
	}
	if h.ReplayMaxAge == "" {
		h.ReplayMaxAge = "7d"
	}
	if h.ReplayMaxAgePeriod == 0 {
		h.ReplayMaxAgePeriod, _ = ParseRetention(h.ReplayMaxAge)
	}
	if c.Offline.MaxMessages == 0 {
		c.Offline.MaxMessages = 10000
	}
	if c.Offline.Retention == "" {
		c.Offline.Retention = "0"
	}
	if c.Presence.QuitGrace.Duration == 0 {
		c.Presence.QuitGrace.Duration = 2 * time.Second
	}
	l := &c.Limits
	if l.MaxStanzaBytes == 0 {
		l.MaxStanzaBytes = 256 << 10
	}
	if l.MaxDepth == 0 {
		l.MaxDepth = 64
	}
	if l.IdleTimeout.Duration == 0 {
		l.IdleTimeout.Duration = 15 * time.Minute
	}
	if l.KeepAlive.Duration == 0 {
		l.KeepAlive.Duration = 60 * time.Second
	}
	if l.MaxConnections == 0 {
		l.MaxConnections = 64
	}
	if l.MaxConnectionsPerAddress == 0 {
		l.MaxConnectionsPerAddress = 32
	}
	if l.MaxUnauthenticatedPerAddress == 0 {
		l.MaxUnauthenticatedPerAddress = 8
	}
	if l.PreAuthTimeout.Duration == 0 {
		l.PreAuthTimeout.Duration = 10 * time.Second
	}
	if l.QueueLen == 0 {
		l.QueueLen = 1024
	}
	if l.AuthFailDelay.Duration == 0 {
		l.AuthFailDelay.Duration = time.Second
	}
	if l.AckAfter == 0 {
		l.AckAfter = 10
	}
	if l.AckDelay.Duration == 0 {
		l.AckDelay.Duration = 5 * time.Second
	}
	if c.Auth.FastTokenLifetime.Duration == 0 {
		c.Auth.FastTokenLifetime.Duration = 30 * 24 * time.Hour
	}
	if l.ResumeTimeout.Duration == 0 {
		l.ResumeTimeout.Duration = 24 * time.Hour
	}
	if l.ResumeQueue == 0 {
		l.ResumeQueue = 10000
	}
	if l.MaxHibernated == 0 {
		l.MaxHibernated = 100
	}
	if l.MaxHibernatedPerAddress == 0 {
		l.MaxHibernatedPerAddress = 20
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
}

func (c *Config) finish() error {
	c.Defaults()
	u := &c.Upstream
	j, err := jid.Parse(u.JID)
	switch {
	case u.JID == "":
		return bad("upstream.jid", "missing: set it to your account, e.g. \"alice@example.org\"")
	case err != nil:
		return bad("upstream.jid", "not a valid JID: %v", err)
	case j.Localpart() == "" || j.Resourcepart() != "":
		return bad("upstream.jid", "must be a bare account JID like \"alice@example.org\", got %q", u.JID)
	}
	if u.Password != "" && u.PasswordFile != "" {
		return bad("upstream.password_file", "set either upstream.password or upstream.password_file, not both")
	}
	if u.PasswordFile != "" {
		pw, err := readSecretFile(u.PasswordFile)
		if err != nil {
			return bad("upstream.password_file", "%v", err)
		}
		u.Password = pw
	}
	if u.Password == "" {
		return bad("upstream.password", "missing: set upstream.password or upstream.password_file")
	}
	if u.Address != "" {
		if _, _, err := splitHostPort(u.Address); err != nil {
			return bad("upstream.address", "%v", err)
		}
	}
	switch u.TLS {
	case "starttls", "direct":
	case "insecure-plaintext":
		if !isLoopback(u.Address) {
			return bad("upstream.tls", "\"insecure-plaintext\" is refused unless upstream.address is a loopback address such as 127.0.0.1:5222")
		}
	default:
		return bad("upstream.tls", "must be \"starttls\", \"direct\" or \"insecure-plaintext\", got %q", u.TLS)
	}
	if u.CAFile != "" {
		if _, err := os.Stat(u.CAFile); err != nil {
			return bad("upstream.ca_file", "%v", err)
		}
	}
	if r, err := jid.New("", "x", u.Resource); err != nil || r.Resourcepart() == "" {
		return bad("upstream.resource", "not a valid resource: %q", u.Resource)
	}
	for _, k := range []struct {
		key  string
		addr string
	}{{"listen.address", c.Listen.Address}, {"listen.direct_tls_address", c.Listen.DirectTLSAddress}} {
		if k.addr == "" {
			continue
		}
		if _, _, err := splitHostPort(k.addr); err != nil {
			return bad(k.key, "%v", err)
		}
	}
	if (c.Listen.CertFile == "") != (c.Listen.KeyFile == "") {
		return bad("listen.cert_file", "set both listen.cert_file and listen.key_file, or neither for a generated self-signed certificate")
	}
	for _, f := range []struct{ key, path string }{{"listen.cert_file", c.Listen.CertFile}, {"listen.key_file", c.Listen.KeyFile}} {
		if f.path != "" {
			if _, err := os.Stat(f.path); err != nil {
				return bad(f.key, "%v", err)
			}
		}
	}
	switch {
	case c.Auth.PasswordHash == "" && c.Auth.Password == "":
		return bad("auth.password_hash", "missing: run `xmppbouncer hash-password` and paste its output here (or set auth.password)")
	case c.Auth.PasswordHash != "" && c.Auth.Password != "":
		return bad("auth.password", "set either auth.password_hash or auth.password, not both")
	case c.Auth.PasswordHash != "" && !strings.HasPrefix(c.Auth.PasswordHash, "scram$"):
		return bad("auth.password_hash", "not a hash from `xmppbouncer hash-password`")
	case c.Auth.FastTokenLifetime.Duration < time.Minute:
		return bad("auth.fast_token_lifetime", "must be at least 1m; got %s", c.Auth.FastTokenLifetime.Duration)
	}
	switch c.Presence.DetachedShow {
	case "available", "away", "xa", "dnd", "chat":
	default:
		return bad("presence.detached_show", "must be one of available, away, xa, dnd, chat; got %q", c.Presence.DetachedShow)
	}
	d, err := ParseRetention(c.History.Retention)
	if err != nil {
		return bad("history.retention", "%v", err)
	}
	c.History.RetentionPeriod = d
	if c.History.ReplayMaxAgePeriod, err = ParseRetention(c.History.ReplayMaxAge); err != nil {
		return bad("history.replay_max_age", "%v", err)
	}
	if c.History.ReplayMax < 0 {
		return bad("history.replay_max", "must not be negative")
	}
	if c.Offline.RetentionPeriod, err = ParseRetention(c.Offline.Retention); err != nil {
		return bad("offline.retention", "%v", err)
	}
	if c.Offline.MaxMessages < 0 {
		return bad("offline.max_messages", "must not be negative")
	}
	if c.History.DefaultReplay < 0 {
		return bad("history.default_replay", "must not be negative")
	}
	if c.History.MAMMaxPage < 1 {
		return bad("history.mam_max_page", "must be at least 1")
	}
	if c.Limits.MaxStanzaBytes < 1024 {
		return bad("limits.max_stanza_bytes", "must be at least 1024")
	}
	if c.Limits.MaxConnections < 1 {
		return bad("limits.max_connections", "must be at least 1")
	}
	if c.Limits.MaxConnectionsPerAddress < 1 {
		return bad("limits.max_connections_per_address", "must be at least 1")
	}
	if c.Limits.MaxUnauthenticatedPerAddress < 1 {
		return bad("limits.max_unauthenticated_per_address", "must be at least 1")
	}
	if c.Limits.PreAuthTimeout.Duration < 0 {
		return bad("limits.preauth_timeout", "must not be negative")
	}
	if c.Limits.AckAfter < 1 {
		return bad("limits.ack_after", "must be at least 1")
	}
	if c.Limits.AckDelay.Duration < 0 || c.Limits.ResumeTimeout.Duration < 0 {
		return bad("limits.resume_timeout", "durations must not be negative")
	}
	if c.Limits.ResumeQueue < 1 {
		return bad("limits.resume_queue", "must be at least 1")
	}
	if c.Limits.MaxHibernated < 1 {
		return bad("limits.max_hibernated", "must be at least 1")
	}
	if c.Limits.MaxHibernatedPerAddress < 1 {
		return bad("limits.max_hibernated_per_address", "must be at least 1")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return bad("log.level", "must be debug, info, warn or error; got %q", c.Log.Level)
	}
	if a := c.Metrics.Address; a != "" {
		if _, _, err := splitHostPort(a); err != nil {
			return bad("metrics.address", "%v", err)
		}
		if !isLoopback(a) && !c.Metrics.AllowRemote {
			return bad("metrics.address", "%q is not a loopback address: the metrics show your rooms' activity to whoever can reach it; set metrics.allow_remote = true if that is what you want", a)
		}
	}
	if err := c.validateWeb(); err != nil {
		return err
	}
	seen := map[string]bool{}
	for i, r := range c.Rooms {
		key := fmt.Sprintf("rooms[%d].jid", i)
		rj, err := jid.Parse(r.JID)
		if err != nil || rj.Localpart() == "" || rj.Resourcepart() != "" {
			return bad(key, "must be a room's bare JID like \"room@conference.example.org\", got %q", r.JID)
		}
		if seen[rj.String()] {
			return bad(key, "room %s is listed twice", rj)
		}
		seen[rj.String()] = true
		c.Rooms[i].JID = rj.String()
		if r.Nick == "" {
			c.Rooms[i].Nick = j.Localpart()
		}
	}
	return nil
}

// ParseRetention parses "0" (forever) or a duration with d (days) allowed,
// such as "365d" or "72h".
func ParseRetention(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "0" || s == "" {
		return 0, nil
	}
	if strings.HasSuffix(s, "d") {
		n, err := strconv.Atoi(strings.TrimSuffix(s, "d"))
		if err != nil || n < 1 {
			return 0, fmt.Errorf("not a retention: %q (use \"0\" to keep forever, or e.g. \"365d\")", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("not a retention: %q (use \"0\" to keep forever, or e.g. \"365d\")", s)
	}
	return d, nil
}

func readSecretFile(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("%s is readable by others (mode %04o); run chmod 600 %s", path, st.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	pw := strings.TrimRight(string(b), "\r\n")
	if pw == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return pw, nil
}

func splitHostPort(addr string) (string, int, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("not host:port: %q", addr)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > 65535 {
		return "", 0, fmt.Errorf("bad port in %q", addr)
	}
	return h, n, nil
}

func isLoopback(addr string) bool {
	h, _, err := splitHostPort(addr)
	if err != nil {
		return false
	}
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
