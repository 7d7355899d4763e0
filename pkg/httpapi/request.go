package httpapi

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/jsonscan"
)

// decode reads a JSON body: 415 unless Content-Type is application/json, 413 past the
// request limit, 400 for invalid JSON (invalid UTF-8 included), a wrong field type or
// trailing data. Unknown fields are ignored, as the contract says, a field named in
// another case included (encoding/json would bind it).
func (a *API) decode(c *gin.Context, v any) error {
	if c.Request.ContentLength == 0 && c.GetHeader("Content-Type") == "" {
		// No body at all: the 415 rule is for requests with one; this one lacks
		// the JSON its route needs.
		return chat.Errorf(chat.EInvalid, "the body is not valid JSON: it is empty")
	}
	mt, _, err := mime.ParseMediaType(c.GetHeader("Content-Type"))
	if err != nil || mt != "application/json" {
		return chat.Errorf(chat.EUnsupportedMedia, "Content-Type must be application/json")
	}
	body, err := io.ReadAll(io.LimitReader(c.Request.Body, int64(a.cfg.RequestBytes)+1))
	if err != nil {
		return chat.Errorf(chat.EInvalid, "could not read the body")
	}
	if len(body) > a.cfg.RequestBytes {
		return chat.Errorf(chat.ETooLarge, "the body is over %d bytes", a.cfg.RequestBytes)
	}
	// JSON text is UTF-8 (RFC 8259). encoding/json would quietly turn invalid bytes
	// into U+FFFD, storing a name or body other than the one sent: refuse instead.
	if !utf8.Valid(body) {
		return chat.Errorf(chat.EInvalid, "the body is not valid UTF-8")
	}
	body = jsonscan.ExactKeys(body, fieldNames(v))
	dec := json.NewDecoder(strings.NewReader(string(body)))
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return chat.Errorf(chat.EInvalid, "field %s has the wrong type", te.Field)
		}
		return chat.Errorf(chat.EInvalid, "the body is not valid JSON")
	}
	// Whatever follows the value must be white space: dec.More alone reads a stray
	// "}" or "]" as the end of a value, so `{...}}` passed.
	if strings.TrimLeft(string(body[dec.InputOffset():]), " \t\r\n") != "" {
		return chat.Errorf(chat.EInvalid, "the body has data after the JSON object")
	}
	return nil
}

// requestFields caches the JSON names of each request type's fields.
var requestFields sync.Map // reflect.Type -> map[string]bool

func fieldNames(v any) map[string]bool {
	t := reflect.TypeOf(v)
	if cached, ok := requestFields.Load(t); ok {
		if names, ok := cached.(map[string]bool); ok {
			return names
		}
	}
	names := jsonscan.FieldNames(t)
	requestFields.Store(t, names)
	return names
}

// limitBody caps every request body at the request limit, so even a handler that reads
// no body cannot be fed an endless one.
func (a *API) limitBody(c *gin.Context) {
	if c.Request.ContentLength > int64(a.cfg.RequestBytes) {
		a.writeError(c, chat.Errorf(chat.ETooLarge, "the body is over %d bytes", a.cfg.RequestBytes))
		return
	}
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, int64(a.cfg.RequestBytes)+1)
	c.Next()
}

// ClientAddr returns the client's address: the TCP peer, unless the peer is a trusted
// proxy, then the right-most X-Forwarded-For entry that is not itself trusted.
func ClientAddr(r *http.Request, trusted []*net.IPNet) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	isTrusted := func(s string) bool {
		ip := net.ParseIP(strings.TrimSpace(s))
		if ip == nil {
			return false
		}
		for _, n := range trusted {
			if n.Contains(ip) {
				return true
			}
		}
		return false
	}
	if !isTrusted(host) {
		return host
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(v, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		h := strings.TrimSpace(hops[i])
		if h == "" {
			continue
		}
		if !isTrusted(h) {
			if net.ParseIP(h) == nil {
				return host
			}
			return h
		}
	}
	return host
}

// OriginPolicy decides which browser origins may open /ws and send cookie-authenticated
// state-changing requests: the host's own (as the request's Host names it, which is the
// front door's when proxied) and the configured extras. No Origin at all is a
// non-browser client and is allowed.
type OriginPolicy struct {
	Allowed []string
}

// Allow reports whether r's Origin is acceptable.
func (p OriginPolicy) Allow(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	for _, a := range p.Allowed {
		if strings.EqualFold(strings.TrimRight(a, "/"), origin) {
			return true
		}
	}
	return false
}

// TokenFrom returns the session token of a request and whether it came from the
// cookie (browsers) rather than the Authorization header.
func TokenFrom(r *http.Request) (token string, cookie bool) {
	if h := r.Header.Get("Authorization"); h != "" {
		if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
			return strings.TrimSpace(h[7:]), false
		}
		return "", false
	}
	if ck, err := r.Cookie(CookieName); err == nil {
		return ck.Value, true
	}
	return "", false
}
