// Package upstream holds the bouncer's one client-to-server session to the
// user's real account: connecting (TCP, TLS, SASL, resource binding),
// keepalive, and reconnecting with backoff. It knows nothing about local
// clients; it hands every inbound stanza to a Handler.
package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"

	"xmppbouncer/config"
	"xmppbouncer/wire"
)

// TLS modes of Config.TLS.
const (
	TLSStartTLS  = "starttls"           // RFC 6120 §5 on a plain TCP connection
	TLSDirect    = "direct"             // XEP-0368: TLS from the first byte
	TLSPlaintext = "insecure-plaintext" // no TLS at all; loopback only
)

// negotiateTimeout bounds TCP connect plus stream negotiation when the
// caller's context has no deadline.
const negotiateTimeout = 30 * time.Second

// Config is how to reach and log in to the upstream account.
type Config struct {
	JID                jid.JID // the bare account JID
	Password           string
	Address            string         // host:port; "" means DNS SRV, then the domain on port 5222
	TLS                string         // TLSStartTLS, TLSDirect or TLSPlaintext; "" means starttls
	InsecureSkipVerify bool           // accept any certificate (tls_insecure_skip_verify)
	RootCAs            *x509.CertPool // nil means the system roots
	Resource           string         // the resource to bind; "" lets the server pick
	PingInterval       time.Duration  // XEP-0199 ping period; 0 means 60 s
	PingTimeout        time.Duration  // no input this long after a ping drops the session; 0 means 30 s
	QueueLen           int            // outgoing stanzas buffered per session; 0 means 1000
	Logger             *slog.Logger   // nil means slog.Default()

	tlsMaxVersion uint16 // tests: force TLS 1.2 to exercise tls-unique

	sm *smNegotiation // XEP-0198 bind-or-resume for this dial; nil: plain bind
}

// ConfigFrom builds a Config from the [upstream] section of the TOML
// configuration: it parses the JID and loads ca_file.
func ConfigFrom(c *config.Upstream) (Config, error) {
	j, err := jid.Parse(c.JID)
	if err != nil {
		return Config{}, fmt.Errorf("upstream.jid: %w", err)
	}
	cfg := Config{
		JID:                j.Bare(),
		Password:           c.Password,
		Address:            c.Address,
		TLS:                c.TLS,
		InsecureSkipVerify: c.TLSInsecureSkipVerify,
		Resource:           c.Resource,
		PingInterval:       c.PingInterval.Duration,
		PingTimeout:        c.PingTimeout.Duration,
		QueueLen:           c.SendQueue,
	}
	if cfg.QueueLen == 0 {
		cfg.QueueLen = c.QueueLimit // the old key, when Defaults did not run
	}
	if c.CAFile != "" {
		if cfg.RootCAs, err = LoadCAFile(c.CAFile); err != nil {
			return Config{}, fmt.Errorf("upstream.ca_file: %w", err)
		}
	}
	return cfg, nil
}

// LoadCAFile reads PEM certificates into a pool to verify the server with.
func LoadCAFile(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

// target is one place to try, with whether it speaks TLS from the start.
type target struct {
	addr   string
	direct bool
}

// targets lists where to connect, in order. Without an address it follows
// XEP-0368 (_xmpps-client SRV records, direct TLS) then RFC 6120 §3.2.1
// (_xmpp-client SRV records) and finally the domain itself.
func (cfg *Config) targets(ctx context.Context, lookup func(ctx context.Context, service, proto, name string) (string, []*net.SRV, error)) []target {
	mode := cfg.tlsMode()
	if cfg.Address != "" {
		return []target{{cfg.Address, mode == TLSDirect}}
	}
	domain := cfg.JID.Domainpart()
	var out []target
	add := func(service string, direct bool) {
		_, recs, err := lookup(ctx, service, "tcp", domain)
		if err != nil {
			return
		}
		for _, r := range recs {
			// RFC 2782: a target of "." means the service is not offered.
			if r.Target == "." || r.Target == "" {
				continue
			}
			out = append(out, target{net.JoinHostPort(trimDot(r.Target), strconv.Itoa(int(r.Port))), direct})
		}
	}
	add("xmpps-client", true)
	if mode == TLSDirect {
		if len(out) == 0 {
			out = append(out, target{net.JoinHostPort(domain, "5223"), true})
		}
		return out
	}
	add("xmpp-client", false)
	return append(out, target{net.JoinHostPort(domain, "5222"), false})
}

func trimDot(s string) string {
	if len(s) > 0 && s[len(s)-1] == '.' {
		return s[:len(s)-1]
	}
	return s
}

func (cfg *Config) tlsMode() string {
	if cfg.TLS == "" {
		return TLSStartTLS
	}
	return cfg.TLS
}

func (cfg *Config) tlsConfig() *tls.Config {
	// ServerName is the XMPP domain, not the SRV target (RFC 6120
	// §13.7.2.1, RFC 7590 §3.2).
	return &tls.Config{
		ServerName:         cfg.JID.Domainpart(),
		RootCAs:            cfg.RootCAs,
		InsecureSkipVerify: cfg.InsecureSkipVerify,
		MinVersion:         tls.VersionTLS12,
		MaxVersion:         cfg.tlsMaxVersion,
	}
}

func (cfg *Config) logger() *slog.Logger {
	if cfg.Logger == nil {
		return slog.Default()
	}
	return cfg.Logger
}

// Dial makes one negotiated connection: TCP, TLS as configured, SASL with
// the strongest mechanism both sides support, and resource binding. It
// returns the connection and the full JID the server bound.
func Dial(ctx context.Context, cfg Config, opts wire.Options) (*wire.Conn, jid.JID, error) {
	return dialRecording(ctx, cfg, opts, nil)
}

// dialRecording is Dial that records what it learned (address, mechanism, TLS
// version, bytes on the wire) in st when st is not nil.
func dialRecording(ctx context.Context, cfg Config, opts wire.Options, st *status) (*wire.Conn, jid.JID, error) {
	mode := cfg.tlsMode()
	switch mode {
	case TLSStartTLS, TLSDirect, TLSPlaintext:
	default:
		return nil, jid.JID{}, fmt.Errorf("unknown TLS mode %q", cfg.TLS)
	}
	if cfg.JID.Localpart() == "" {
		return nil, jid.JID{}, fmt.Errorf("the account JID %q has no local part", cfg.JID)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, negotiateTimeout)
		defer cancel()
	}
	var errs []error
	for _, t := range cfg.targets(ctx, net.DefaultResolver.LookupSRV) {
		c, bound, err := dialTarget(ctx, &cfg, t, opts, st)
		if err == nil {
			return c, bound, nil
		}
		errs = append(errs, err)
		// Only a connection failure makes another target worth trying;
		// the same credentials or certificate would fail there too.
		var ne *net.OpError
		if !errors.As(err, &ne) || ctx.Err() != nil {
			break
		}
	}
	return nil, jid.JID{}, errors.Join(errs...)
}

func dialTarget(ctx context.Context, cfg *Config, t target, opts wire.Options, st *status) (*wire.Conn, jid.JID, error) {
	log := cfg.logger()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return nil, jid.JID{}, fmt.Errorf("connect to %s: %w", t.addr, err)
	}
	var mechanism string
	if st != nil {
		raw = countingConn{Conn: raw, in: &st.in, out: &st.out}
	}
	meter := wire.NewMeter(raw)
	fail := func(err error) (*wire.Conn, jid.JID, error) {
		meter.Close()
		return nil, jid.JID{}, err
	}
	// The tail records what mellium's decoder reads, above any TLS, so
	// that a server's stream error it fails to parse keeps its condition.
	tail := wire.NewTail(meter)
	var rw io.ReadWriter = tail
	tlsCfg := cfg.tlsConfig()
	if t.direct {
		// XEP-0368 §4: ALPN "xmpp-client" tells the server which protocol
		// runs inside when it shares the port with others.
		tlsCfg.NextProtos = []string{"xmpp-client"}
		tc := tls.Client(meter, tlsCfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fail(tlsError(tlsCfg.ServerName, err))
		}
		tail = wire.NewTail(tc)
		rw = tail
	}
	features := []xmpp.StreamFeature{
		channelBindings(),
		authenticate(cfg.JID, cfg.Password, cfg.tlsMode() != TLSPlaintext, log, &mechanism),
	}
	if cfg.tlsMode() == TLSStartTLS && !t.direct {
		features = append(features, startTLS(tlsCfg, func(tc net.Conn) net.Conn {
			tail = wire.NewTail(tc)
			return tail
		}))
	}
	var bound jid.JID
	if cfg.sm != nil {
		features = append(features, cfg.sm.feature(cfg.Resource, &bound))
	} else {
		features = append(features, wire.ClientBind(cfg.Resource, &bound))
	}
	// NewClientSession, but with the Secure state set by hand for direct
	// TLS: mellium only sees that the transport is TLS when it is given
	// the *tls.Conn itself, and the tail sits above it.
	var state xmpp.SessionState
	if t.direct {
		state = xmpp.Secure
	}
	sess, err := xmpp.NewSession(ctx, cfg.JID.Domain(), cfg.JID.Bare(), rw, state, xmpp.NewNegotiator(func(*xmpp.Session, *xmpp.StreamConfig) xmpp.StreamConfig {
		return xmpp.StreamConfig{Features: features}
	}))
	if err != nil {
		switch {
		case ctx.Err() != nil:
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		case cfg.tlsMode() == TLSPlaintext && strings.Contains(err.Error(), "features advertised out of order"):
			// mellium's words for "nothing we may negotiate": the server
			// offers SASL only after TLS.
			err = fmt.Errorf("the server requires TLS before login; use tls = \"starttls\" (%w)", err)
		}
		return fail(fmt.Errorf("negotiate with %s at %s: %w", cfg.JID.Domainpart(), t.addr, err))
	}
	if bound.Bare().String() != cfg.JID.Bare().String() {
		return fail(fmt.Errorf("the server bound %s, not a resource of %s", bound, cfg.JID.Bare()))
	}
	log.Info("upstream connected", "addr", t.addr, "jid", bound.String(), "direct_tls", t.direct)
	opts.Tail = tail
	if st != nil {
		st.mu.Lock()
		st.dialInfo = dialInfo{addr: t.addr, mechanism: mechanism, tls: tlsVersionName(sess.ConnectionState().Version)}
		st.mu.Unlock()
	}
	return wire.New(sess, meter, opts), bound, nil
}

// tlsError explains a failed handshake, pointing at the settings that fix
// a certificate the system does not trust.
func tlsError(server string, err error) error {
	var ve *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ie x509.CertificateInvalidError
	if errors.As(err, &ve) || errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ie) {
		return &TLSVerifyError{Server: server, Err: err}
	}
	var rh tls.RecordHeaderError
	if errors.As(err, &rh) {
		return fmt.Errorf("TLS handshake with %s: %w (the port does not speak direct TLS; for port 5222 use tls = \"starttls\")", server, err)
	}
	return fmt.Errorf("TLS handshake with %s: %w", server, err)
}

// TLSVerifyError is a server certificate that did not verify.
type TLSVerifyError struct {
	Server string
	Err    error
}

// Error explains the failure and the settings that can fix it.
func (e *TLSVerifyError) Error() string {
	return fmt.Sprintf("TLS certificate verification failed for %s: %v; if the server uses a private CA, set upstream.ca_file to its certificate (or, unsafely, upstream.tls_insecure_skip_verify = true)", e.Server, e.Err)
}

// Unwrap returns the crypto/tls or crypto/x509 error.
func (e *TLSVerifyError) Unwrap() error { return e.Err }
