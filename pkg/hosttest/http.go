package hosttest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/switchboard-chat/switchboard/pkg/httpapi"
)

// Request is one HTTP request of a test.
type Request struct {
	Method string
	Path   string // with the query, e.g. /api/v1/threads/x/messages?limit=5
	// Body is sent as is when a string or []byte, JSON-encoded otherwise; nil sends none.
	Body any
	// ContentType defaults to application/json when there is a body; "none" sends no
	// Content-Type header.
	ContentType string
	Token       string // Authorization: Bearer <Token>
	Cookie      string // chat_session=<Cookie>, sent verbatim
	Origin      string
	// Chunked hides the body's length, so the server sees Transfer-Encoding: chunked.
	Chunked bool
	Header  http.Header
}

// Reply is a server's answer, fully read.
type Reply struct {
	Status  int
	Header  http.Header
	Body    []byte
	Cookies []*http.Cookie
}

// Do sends r to base (e.g. http://127.0.0.1:port) with client and reads the answer.
func Do(client *http.Client, base string, r Request) (Reply, error) {
	var body io.Reader
	if r.Body != nil {
		var b []byte
		switch v := r.Body.(type) {
		case string:
			b = []byte(v)
		case []byte:
			b = v
		default:
			var err error
			if b, err = json.Marshal(v); err != nil {
				return Reply{}, fmt.Errorf("encode request body: %w", err)
			}
		}
		if r.Chunked {
			body = io.MultiReader(bytes.NewReader(b)) // hides the length
		} else {
			body = bytes.NewReader(b)
		}
	}
	hr, err := http.NewRequestWithContext(context.Background(), r.Method, base+r.Path, body)
	if err != nil {
		return Reply{}, fmt.Errorf("new request: %w", err)
	}
	for k, vs := range r.Header {
		hr.Header[k] = vs
	}
	switch {
	case r.ContentType == "none":
	case r.ContentType != "":
		hr.Header.Set("Content-Type", r.ContentType)
	case r.Body != nil:
		hr.Header.Set("Content-Type", "application/json")
	}
	if r.Token != "" {
		hr.Header.Set("Authorization", "Bearer "+r.Token)
	}
	if r.Cookie != "" {
		hr.Header.Add("Cookie", httpapi.CookieName+"="+r.Cookie)
	}
	if r.Origin != "" {
		hr.Header.Set("Origin", r.Origin)
	}
	resp, err := client.Do(hr)
	if err != nil {
		return Reply{}, fmt.Errorf("%s %s: %w", r.Method, r.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return Reply{}, fmt.Errorf("%s %s: read answer: %w", r.Method, r.Path, err)
	}
	return Reply{Status: resp.StatusCode, Header: resp.Header, Body: b, Cookies: resp.Cookies()}, nil
}

// Try sends r to the host's public listener; it is Do for goroutines other than the
// test's, returning what went wrong.
func (h *Host) Try(r Request) (Reply, error) {
	return Do(h.Client, h.URL, r)
}

// Do sends r to the host's public listener and fails the test when it cannot.
func (h *Host) Do(tb testing.TB, r Request) Reply {
	tb.Helper()
	rep, err := h.Try(r)
	if err != nil {
		tb.Fatal(err)
	}
	return rep
}

// Decode unmarshals the answer's JSON body into v, failing unless it is JSON.
func (r Reply) Decode(tb testing.TB, v any) {
	tb.Helper()
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		tb.Fatalf("Content-Type %q, want application/json; body %s", ct, r.Body)
	}
	if err := json.Unmarshal(r.Body, v); err != nil {
		tb.Fatalf("decode %s: %v", r.Body, err)
	}
}

// WantStatus fails unless the answer has status.
func WantStatus(tb testing.TB, r Reply, status int) {
	tb.Helper()
	if r.Status != status {
		tb.Fatalf("status %d, want %d; body %s", r.Status, status, r.Body)
	}
}

// APIError is the contract's error body.
type APIError struct {
	Code    string         `json:"code"`
	Message string         `json:"message"`
	Details map[string]any `json:"details"`
}

// CheckError reports how r differs from the contract's error answer with status and
// code: a JSON body that is exactly {"error":{"code","message"[,"details"]}} with a
// non-empty message and, when present, details an object.
func CheckError(r Reply, status int, code string) (APIError, error) {
	var e APIError
	if r.Status != status {
		return e, fmt.Errorf("status %d, want %d (%s); body %s", r.Status, status, code, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return e, fmt.Errorf("Content-Type %q, want application/json; body %s", ct, r.Body)
	}
	var outer map[string]json.RawMessage
	if err := json.Unmarshal(r.Body, &outer); err != nil {
		return e, fmt.Errorf("decode %s: %w", r.Body, err)
	}
	if len(outer) != 1 || outer["error"] == nil {
		return e, fmt.Errorf("error body %s: want exactly one key, error", r.Body)
	}
	var inner map[string]json.RawMessage
	if err := json.Unmarshal(outer["error"], &inner); err != nil {
		return e, fmt.Errorf("error body %s: error is not an object: %w", r.Body, err)
	}
	for k := range inner {
		if k != "code" && k != "message" && k != "details" {
			return e, fmt.Errorf("error body %s: unexpected key %q", r.Body, k)
		}
	}
	dec := json.NewDecoder(bytes.NewReader(outer["error"]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return e, fmt.Errorf("error body %s: %w", r.Body, err)
	}
	if e.Code != code {
		return e, fmt.Errorf("error code %q, want %q; body %s", e.Code, code, r.Body)
	}
	if e.Message == "" {
		return e, fmt.Errorf("error body %s: empty message", r.Body)
	}
	if raw, ok := inner["details"]; ok && (len(raw) == 0 || raw[0] != '{') {
		return e, fmt.Errorf("error body %s: details must be an object", r.Body)
	}
	return e, nil
}

// WantError fails unless r is the contract's error answer with status and code (see
// CheckError), and returns the error.
func WantError(tb testing.TB, r Reply, status int, code string) APIError {
	tb.Helper()
	e, err := CheckError(r, status, code)
	if err != nil {
		tb.Fatal(err)
	}
	return e
}
