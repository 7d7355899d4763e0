// Package web serves Switchboard's browser client: plain HTML, CSS and JavaScript
// embedded in the binary, so every host and the `chatd dev` front door can serve it at /
// with no build step and nothing fetched from elsewhere.
//
// The client talks to the same origin only: the JSON API at /api/v1 and the WebSocket at
// /ws. Handler does not serve those; mount it as the fallback of the public mux.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var staticFiles embed.FS

// ContentSecurityPolicy is sent with every response of Handler. It allows scripts,
// styles and images from this origin only (plus data: images), network access to this
// origin and WebSockets, and no framing; so the client has no inline scripts or styles.
const ContentSecurityPolicy = "default-src 'self'; connect-src 'self' ws: wss:; " +
	"img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'"

const (
	indexPath = "/index.html"
	// cacheRevalidate makes browsers check with the server (cheaply, by ETag) before
	// reusing a copy, so a new release is picked up on the next load.
	cacheRevalidate = "no-cache"
	// cacheImmutable is for asset URLs carrying the content hash (?v=...): they never
	// change, so browsers may keep them for a year without asking.
	cacheImmutable = "public, max-age=31536000, immutable"
)

// asset is one file ready to serve.
type asset struct {
	body        []byte
	contentType string
	etag        string // strong ETag: quoted hex SHA-256 prefix of body
	version     string // the same hash, used as ?v= in index.html
}

// handler serves the embedded files. It is immutable after construction.
type handler struct {
	assets map[string]*asset // keyed by URL path, e.g. "/app.js"
}

// Handler returns the http.Handler serving the web client: GET or HEAD of / (or
// /index.html) answers the page, other paths the embedded files by name, anything else
// 404; other methods get 405. Every response carries ContentSecurityPolicy and
// X-Content-Type-Options: nosniff.
//
// Caching: the page is "no-cache" (always revalidated by ETag) and references each
// asset as name?v=<content hash>; a request with the current hash is cacheable for a
// year, any other asset request is revalidated. So a new release is never mixed with a
// stale script or stylesheet.
//
// Handler panics if the embedded files are unusable, which only a broken build can cause.
func Handler() http.Handler {
	sub, err := fs.Sub(staticFiles, "static")
	if err != nil {
		panic(fmt.Sprintf("web: embedded static files: %v", err))
	}
	h, err := newHandler(sub)
	if err != nil {
		panic(fmt.Sprintf("web: %v", err))
	}
	return h
}

// newHandler reads every file of fsys and prepares it. index.html must exist; its
// references to other files (written as ="name") get the ?v=<hash> suffix.
func newHandler(fsys fs.FS) (*handler, error) {
	h := &handler{assets: make(map[string]*asset)}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := fs.ReadFile(fsys, p)
		if err != nil {
			return fmt.Errorf("read %s: %w", p, err)
		}
		h.assets["/"+p] = newAsset(p, body)
		return nil
	})
	if err != nil {
		return nil, err
	}
	index, ok := h.assets[indexPath]
	if !ok {
		return nil, fmt.Errorf("no index.html among the embedded files")
	}
	body := index.body
	for name, a := range h.assets {
		if name == indexPath {
			continue
		}
		ref := strings.TrimPrefix(name, "/")
		body = bytes.ReplaceAll(body, []byte(`="`+ref+`"`), []byte(`="`+ref+`?v=`+a.version+`"`))
	}
	h.assets[indexPath] = newAsset(indexPath, body)
	return h, nil
}

func newAsset(name string, body []byte) *asset {
	sum := sha256.Sum256(body)
	version := hex.EncodeToString(sum[:8])
	return &asset{
		body:        body,
		contentType: contentType(name),
		etag:        `"` + version + `"`,
		version:     version,
	}
}

// contentType is fixed per extension rather than taken from the system's MIME tables,
// so a host's /etc/mime.types cannot change what the browser is told.
func contentType(name string) string {
	switch strings.ToLower(path.Ext(name)) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".js", ".mjs":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	case ".png":
		return "image/png"
	case ".ico":
		return "image/x-icon"
	case ".json", ".webmanifest":
		return "application/json"
	case ".txt":
		return "text/plain; charset=utf-8"
	default:
		return "application/octet-stream"
	}
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Content-Security-Policy", ContentSecurityPolicy)
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "same-origin")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p := r.URL.Path
	if p == "" || p == "/" {
		p = indexPath
	}
	a, ok := h.assets[p]
	if !ok {
		http.NotFound(w, r)
		return
	}
	hdr.Set("Content-Type", a.contentType)
	hdr.Set("ETag", a.etag)
	if p != indexPath && r.URL.Query().Get("v") == a.version {
		hdr.Set("Cache-Control", cacheImmutable)
	} else {
		hdr.Set("Cache-Control", cacheRevalidate)
	}
	// ServeContent answers If-None-Match with 304 (from the ETag above), Range and HEAD.
	http.ServeContent(w, r, p, time.Time{}, bytes.NewReader(a.body))
}
