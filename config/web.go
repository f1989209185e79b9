package config

import (
	"net/url"
	"os"
	"strings"
)

// Web is the static web client served next to the WebSocket endpoint.
type Web struct {
	// Root is a directory served at / on listen.websocket_address ("" =
	// no web client); `make web` fills one with Converse.js.
	Root string `toml:"root"`
	// WebSocketURL is the URL advertised by XEP-0156 host-meta and to the
	// web client, for a bouncer behind a reverse proxy ("": the URL the
	// client reached us at).
	WebSocketURL string `toml:"websocket_url"`
}

// validateWeb checks the WebSocket and web client keys.
func (c *Config) validateWeb() error {
	l := c.Listen
	if a := l.WebSocketAddress; a != "" {
		if _, _, err := splitHostPort(a); err != nil {
			return bad("listen.websocket_address", "%v", err)
		}
		if l.WebSocketPlain && !isLoopback(a) {
			return bad("listen.websocket_plain", "plain ws:// is only allowed on a loopback address (e.g. 127.0.0.1:5280 behind a reverse proxy that does TLS); %q is not one: remove websocket_plain to serve wss:// with the listener's certificate", a)
		}
	} else if l.WebSocketPlain || len(l.WebSocketOrigins) > 0 || c.Web.Root != "" || c.Web.WebSocketURL != "" {
		key := "listen.websocket_plain"
		switch {
		case c.Web.Root != "":
			key = "web.root"
		case c.Web.WebSocketURL != "":
			key = "web.websocket_url"
		case len(l.WebSocketOrigins) > 0:
			key = "listen.websocket_origins"
		}
		return bad(key, "needs listen.websocket_address (the HTTP listener it applies to)")
	}
	for i, o := range l.WebSocketOrigins {
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			return bad("listen.websocket_origins", "entry %d, %q, is not an origin like \"https://chat.example.org\" (scheme, host and optional port only)", i+1, o)
		}
		c.Listen.WebSocketOrigins[i] = strings.ToLower(strings.TrimSuffix(o, "/"))
	}
	if u := c.Web.WebSocketURL; u != "" {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "wss" && p.Scheme != "ws") || p.Host == "" {
			return bad("web.websocket_url", "%q is not a ws:// or wss:// URL", u)
		}
	}
	if r := c.Web.Root; r != "" {
		st, err := os.Stat(r)
		switch {
		case err != nil:
			return bad("web.root", "%v (run `make web` to fetch the web client)", err)
		case !st.IsDir():
			return bad("web.root", "%s is not a directory", r)
		}
	}
	return nil
}
