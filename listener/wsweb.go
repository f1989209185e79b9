package listener

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path"
	"strings"
)

// XEP-0156 discovery and the static web client.

const relWebSocket = "urn:xmpp:alt-connections:websocket"

func (s *Server) serveHostMeta(w http.ResponseWriter, r *http.Request) {
	type link struct {
		Rel  string `xml:"rel,attr"`
		Href string `xml:"href,attr"`
	}
	doc := struct {
		XMLName xml.Name `xml:"http://docs.oasis-open.org/ns/xri/xrd-1.0 XRD"`
		Links   []link   `xml:"Link"`
	}{Links: []link{{relWebSocket, s.wsURL(r)}}}
	b, _ := xml.Marshal(doc)
	w.Header().Set("Content-Type", "application/xrd+xml; charset=utf-8")
	// Discovery is meant for pages on other origins (XEP-0156 §3.2).
	w.Header().Set("Access-Control-Allow-Origin", "*")
	_, _ = w.Write(append([]byte(xml.Header), b...))
}

func (s *Server) serveHostMetaJSON(w http.ResponseWriter, r *http.Request) {
	doc := map[string]any{"links": []map[string]string{{"rel": relWebSocket, "href": s.wsURL(r)}}}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Access-Control-Allow-Origin", "*")
	_ = json.NewEncoder(w).Encode(doc)
}

// serveWebConfig tells the web client (web/init.js) what to prefill: the
// account's JID, and the WebSocket URL if one is configured (else the page
// uses its own location).
func (s *Server) serveWebConfig(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(map[string]string{
		"jid":            s.bare.String(),
		"websocket_url":  s.cfg.WebSocketURL,
		"websocket_path": strings.TrimPrefix(WebSocketPath, "/"),
	})
}

// webRoot serves the files under cfg.WebRoot: no directory listings, no
// dotfiles, and nothing outside the root, symlinks included.
func (s *Server) webRoot() http.Handler {
	if s.cfg.WebRoot == "" {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "no web client here: set [web] root (make web fetches one)", http.StatusNotFound)
		})
	}
	root, err := os.OpenRoot(s.cfg.WebRoot)
	if err != nil {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.log.Error("listener: web root", "err", err)
			http.Error(w, "the web client's directory cannot be opened", http.StatusInternalServerError)
		})
	}
	return http.FileServerFS(noListFS{root.FS()})
}

// noListFS hides directories without an index.html, and dotfiles.
type noListFS struct{ fs.FS }

func (n noListFS) Open(name string) (fs.File, error) {
	for _, part := range strings.Split(name, "/") {
		if strings.HasPrefix(part, ".") && part != "." {
			return nil, fs.ErrNotExist
		}
	}
	f, err := n.FS.Open(name)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if st.IsDir() {
		idx, err := n.FS.Open(path.Join(name, "index.html"))
		if err != nil {
			f.Close()
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fs.ErrNotExist
			}
			return nil, err
		}
		idx.Close()
	}
	return f, nil
}
