package config

import (
	"strings"
	"testing"
)

// WebSocket and web client keys: plain ws only on loopback, origins must be
// origins, the web root must exist, and each names its key.
func TestWebSocketKeys(t *testing.T) {
	bad := []struct{ name, body, key, msg string }{
		{"plain ws on a public address", "[listen]\nwebsocket_address = \"0.0.0.0:5280\"\nwebsocket_plain = true\n", "listen.websocket_plain", "only allowed on a loopback address"},
		{"plain ws on a name", "[listen]\nwebsocket_address = \"chat.example.org:80\"\nwebsocket_plain = true\n", "listen.websocket_plain", "only allowed on a loopback address"},
		{"address bad", "[listen]\nwebsocket_address = \"5280\"\n", "listen.websocket_address", ""},
		{"origin with a path", "[listen]\nwebsocket_address = \"127.0.0.1:5280\"\nwebsocket_origins = [\"https://chat.example.org/app\"]\n", "listen.websocket_origins", "not an origin"},
		{"origin without scheme", "[listen]\nwebsocket_address = \"127.0.0.1:5280\"\nwebsocket_origins = [\"chat.example.org\"]\n", "listen.websocket_origins", "not an origin"},
		{"origins without the listener", "[listen]\nwebsocket_origins = [\"https://chat.example.org\"]\n", "listen.websocket_origins", "needs listen.websocket_address"},
		{"web root without the listener", "[web]\nroot = \"/tmp\"\n", "web.root", "needs listen.websocket_address"},
		{"websocket_url without the listener", "[web]\nwebsocket_url = \"wss://x.example/xmpp-websocket\"\n", "web.websocket_url", "needs listen.websocket_address"},
		{"web root absent", "[listen]\nwebsocket_address = \"127.0.0.1:5280\"\n[web]\nroot = \"/nonexistent/web\"\n", "web.root", "make web"},
		{"websocket_url not ws", "[listen]\nwebsocket_address = \"127.0.0.1:5280\"\n[web]\nwebsocket_url = \"https://x.example/xmpp-websocket\"\n", "web.websocket_url", "not a ws://"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(write(t, minimal+tc.body))
			wantKey(t, err, tc.key)
			if !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %q does not say %q", err, tc.msg)
			}
		})
	}
	c, err := Load(write(t, minimal+"[listen]\nwebsocket_address = \"127.0.0.1:5280\"\nwebsocket_plain = true\nwebsocket_origins = [\"HTTPS://Chat.Example.org/\"]\n[web]\nroot = \""+t.TempDir()+"\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Listen.WebSocketOrigins; len(got) != 1 || got[0] != "https://chat.example.org" {
		t.Fatalf("origins %q", got)
	}
}
