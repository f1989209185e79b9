// Package listener is the local c2s server that XMPP clients log in to.
// It negotiates the stream (STARTTLS or XEP-0368 direct TLS, SASL, resource
// binding) and then hands each client's stanzas to a Handler, in order,
// from that client's own reader goroutine. It decides nothing about
// routing: the bouncer core does.
package listener

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"time"

	"mellium.im/xmpp/jid"

	"xmppbouncer/config"
	"xmppbouncer/wire"
)

// Config is what New needs.
type Config struct {
	Domain   string // the upstream account's domain: the one domain we serve
	Username string // the upstream account's localpart: the only login accepted
	// ReservedResource is the bouncer's own upstream resource: a client
	// asking for it gets a generated one, so its address never collides
	// with the upstream session's.
	ReservedResource string
	Creds            *Credentials
	TLS              *tls.Config // server certificate(s)

	// Listening addresses; "" disables. Address offers STARTTLS (RFC 6120
	// §5), DirectTLSAddress is XEP-0368 direct TLS.
	Address, DirectTLSAddress string

	Limits         wire.Options
	SM             SMOptions // XEP-0198 stream management
	MaxConnections int       // beyond it new connections get <policy-violation/>
	// Per remote address: connections, and connections not yet
	// authenticated (0: no limit), so one address cannot lock the others
	// out. Beyond either, new connections get <policy-violation/>.
	MaxConnectionsPerAddress     int
	MaxUnauthenticatedPerAddress int
	// PreAuthTimeout bounds the time from accept to SASL success (0: the
	// whole negotiation timeout, 30 s); binding must still finish within
	// the negotiation timeout.
	PreAuthTimeout time.Duration
	AuthFailDelay  time.Duration // base delay of a SASL failure reply, doubling per recent failure from the same IP
	// FastTokens stores XEP-0484 FAST tokens; nil: FAST is not offered.
	FastTokens        FastTokenStore
	FastTokenLifetime time.Duration // 0: DefaultFastTokenLifetime
	Logger            *slog.Logger

	// XMPP over WebSocket (RFC 7395) and the web client (wsserver.go):
	// the HTTP listener's address ("" = off), plain ws instead of wss,
	// the allowed Origin values (none: our own), the directory served at /
	// and the WebSocket URL to advertise ("": as the client reached us).
	WebSocketAddress string
	WebSocketPlain   bool
	WebSocketOrigins []string
	WebRoot          string
	WebSocketURL     string
}

// defaultWriteTimeout closes a client that stops reading; config has no
// key for it.
const defaultWriteTimeout = 30 * time.Second

// ConfigFrom builds a Config from the TOML configuration. The certificate
// comes from listen.cert_file/key_file, or is generated once into dataDir.
func ConfigFrom(c *config.Config, dataDir string, log *slog.Logger) (Config, error) {
	if log == nil {
		log = slog.Default()
	}
	account, err := jid.Parse(c.Upstream.JID)
	if err != nil || account.Localpart() == "" {
		return Config{}, fmt.Errorf("listener: upstream.jid %q is not an account JID", c.Upstream.JID)
	}
	var creds *Credentials
	switch {
	case c.Auth.PasswordHash != "":
		creds, err = ParseCredentials(c.Auth.PasswordHash)
		if err != nil {
			return Config{}, fmt.Errorf("listener: auth.password_hash: %w", err)
		}
	case c.Auth.Password != "":
		creds = PlainCredentials(c.Auth.Password)
	default:
		return Config{}, fmt.Errorf("listener: set auth.password_hash or auth.password")
	}
	hosts := []string{account.Domainpart(), "localhost"}
	for _, a := range []string{c.Listen.Address, c.Listen.DirectTLSAddress, c.Listen.WebSocketAddress} {
		if h, _, err := net.SplitHostPort(a); err == nil && h != "" && h != "localhost" && h != account.Domainpart() {
			if ip := net.ParseIP(h); ip == nil || !ip.IsUnspecified() {
				hosts = append(hosts, h)
			}
		}
	}
	cert, fp, err := LoadOrCreateCert(c.Listen.CertFile, c.Listen.KeyFile, dataDir, hosts)
	if err != nil {
		return Config{}, fmt.Errorf("listener: %w", err)
	}
	if cert.Leaf != nil && cert.Leaf.VerifyHostname(account.Domainpart()) != nil {
		log.Warn("listener: certificate does not name the account's domain; clients will warn", "domain", account.Domainpart())
	}
	log.Info("listener: TLS certificate", "sha256", fp, "subject", cert.Leaf.Subject.CommonName)
	l := c.Limits
	return Config{
		Domain:           account.Domainpart(),
		Username:         account.Localpart(),
		ReservedResource: c.Upstream.Resource,
		Creds:            creds,
		TLS: &tls.Config{
			Certificates: []tls.Certificate{cert},
			MinVersion:   tls.VersionTLS12,
		},
		Address:          c.Listen.Address,
		DirectTLSAddress: c.Listen.DirectTLSAddress,
		Limits: wire.Options{
			MaxStanzaBytes: l.MaxStanzaBytes,
			MaxDepth:       l.MaxDepth,
			IdleTimeout:    l.IdleTimeout.Duration,
			KeepAlive:      l.KeepAlive.Duration,
			WriteTimeout:   defaultWriteTimeout,
			QueueLen:       l.QueueLen,
		},
		SM: SMOptions{
			AckAfter:      l.AckAfter,
			AckDelay:      l.AckDelay.Duration,
			ResumeTimeout: l.ResumeTimeout.Duration,
			ResumeQueue:   l.ResumeQueue,

			MaxHibernated:           l.MaxHibernated,
			MaxHibernatedPerAddress: l.MaxHibernatedPerAddress,
		},
		MaxConnections: l.MaxConnections,

		MaxConnectionsPerAddress:     l.MaxConnectionsPerAddress,
		MaxUnauthenticatedPerAddress: l.MaxUnauthenticatedPerAddress,
		PreAuthTimeout:               l.PreAuthTimeout.Duration,
		AuthFailDelay:                l.AuthFailDelay.Duration,
		FastTokenLifetime:            c.Auth.FastTokenLifetime.Duration,
		Logger:                       log,
		WebSocketAddress:             c.Listen.WebSocketAddress,
		WebSocketPlain:               c.Listen.WebSocketPlain,
		WebSocketOrigins:             c.Listen.WebSocketOrigins,
		WebRoot:                      c.Web.Root,
		WebSocketURL:                 c.Web.WebSocketURL,
	}, nil
}
