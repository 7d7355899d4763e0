package web

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func serve(t *testing.T, h http.Handler, method, target string, header http.Header) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestHandler(t *testing.T) {
	t.Parallel()
	h := Handler()

	tests := []struct {
		name        string
		method      string
		target      string
		wantStatus  int
		wantType    string // prefix of Content-Type; empty: not checked
		wantCache   string // empty: not checked
		wantBodyHas string
	}{
		{name: "index at root", method: http.MethodGet, target: "/", wantStatus: http.StatusOK,
			wantType: "text/html", wantCache: "no-cache", wantBodyHas: `<script type="module" src="app.js?v=`},
		{name: "index by name", method: http.MethodGet, target: "/index.html", wantStatus: http.StatusOK,
			wantType: "text/html", wantCache: "no-cache"},
		{name: "script", method: http.MethodGet, target: "/app.js", wantStatus: http.StatusOK,
			wantType: "text/javascript", wantCache: "no-cache", wantBodyHas: "#login-username"},
		{name: "stylesheet", method: http.MethodGet, target: "/app.css", wantStatus: http.StatusOK,
			wantType: "text/css", wantCache: "no-cache"},
		{name: "head", method: http.MethodHead, target: "/app.js", wantStatus: http.StatusOK,
			wantType: "text/javascript"},
		{name: "unknown file", method: http.MethodGet, target: "/nope.js", wantStatus: http.StatusNotFound},
		{name: "no traversal", method: http.MethodGet, target: "/../web.go", wantStatus: http.StatusNotFound},
		{name: "post", method: http.MethodPost, target: "/", wantStatus: http.StatusMethodNotAllowed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := serve(t, h, tc.method, tc.target, nil)
			if rec.Code != tc.wantStatus {
				t.Fatalf("status = %d, want %d", rec.Code, tc.wantStatus)
			}
			if got := rec.Header().Get("Content-Security-Policy"); got != ContentSecurityPolicy {
				t.Errorf("Content-Security-Policy = %q, want %q", got, ContentSecurityPolicy)
			}
			if got := rec.Header().Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options = %q, want nosniff", got)
			}
			if ct := rec.Header().Get("Content-Type"); tc.wantType != "" && !strings.HasPrefix(ct, tc.wantType) {
				t.Errorf("Content-Type = %q, want %s", ct, tc.wantType)
			}
			if cc := rec.Header().Get("Cache-Control"); tc.wantCache != "" && cc != tc.wantCache {
				t.Errorf("Cache-Control = %q, want %q", cc, tc.wantCache)
			}
			if tc.wantBodyHas != "" && !strings.Contains(rec.Body.String(), tc.wantBodyHas) {
				t.Errorf("body lacks %q", tc.wantBodyHas)
			}
		})
	}
}

func TestContentSecurityPolicyValue(t *testing.T) {
	t.Parallel()
	const want = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; " +
		"style-src 'self'; script-src 'self'; frame-ancestors 'none'"
	if ContentSecurityPolicy != want {
		t.Fatalf("ContentSecurityPolicy = %q, want %q", ContentSecurityPolicy, want)
	}
}

// TestVersionedAssets checks that the page references its assets by content hash, that
// those URLs are cacheable for good, and that ETags revalidate.
func TestVersionedAssets(t *testing.T) {
	t.Parallel()
	h := Handler()
	index := serve(t, h, http.MethodGet, "/", nil).Body.String()
	m := regexp.MustCompile(`src="(app\.js\?v=[0-9a-f]+)"`).FindStringSubmatch(index)
	if m == nil {
		t.Fatalf("index.html has no versioned app.js reference")
	}
	if !strings.Contains(index, `href="app.css?v=`) {
		t.Errorf("index.html has no versioned app.css reference")
	}

	rec := serve(t, h, http.MethodGet, "/"+m[1], nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET %s: status %d", m[1], rec.Code)
	}
	if cc := rec.Header().Get("Cache-Control"); !strings.Contains(cc, "immutable") {
		t.Errorf("Cache-Control of versioned asset = %q, want immutable", cc)
	}
	etag := rec.Header().Get("ETag")
	if etag == "" {
		t.Fatalf("no ETag")
	}
	rec = serve(t, h, http.MethodGet, "/app.js", http.Header{"If-None-Match": {etag}})
	if rec.Code != http.StatusNotModified {
		t.Errorf("If-None-Match: status %d, want 304", rec.Code)
	}
	rec = serve(t, h, http.MethodGet, "/app.js?v=stale", nil)
	if cc := rec.Header().Get("Cache-Control"); cc != "no-cache" {
		t.Errorf("Cache-Control of stale version = %q, want no-cache", cc)
	}
}

// TestPageHooks keeps the element ids the browser end-to-end test relies on, and the
// CSP promise of no inline script or style, from silently disappearing.
func TestPageHooks(t *testing.T) {
	t.Parallel()
	index := serve(t, Handler(), http.MethodGet, "/", nil).Body.String()
	for _, id := range []string{
		"login-username", "login-password", "login-submit", "register-submit", "logout",
		"new-thread-name", "new-thread-members", "new-thread-submit", "thread-list",
		"composer", "messages", "host-footer", "error",
	} {
		if !strings.Contains(index, `id="`+id+`"`) {
			t.Errorf("index.html lacks id=%q", id)
		}
	}
	for _, bad := range []string{"<style", " style=", "onclick=", "onload=", "javascript:"} {
		if strings.Contains(index, bad) {
			t.Errorf("index.html contains %q, which the CSP forbids", bad)
		}
	}
	if regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]`).MatchString(index) {
		t.Errorf("index.html has an inline script")
	}
}
