package cluster_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/pkg/cluster"
)

const (
	secret = "0123456789abcdef0123456789abcdef-test-secret"
	path   = "/internal/v1/deliver"
)

var now = time.Unix(1_750_000_000, 0)

// signerAt returns a Signer for key whose clock reads at.
func signerAt(key string, at time.Time) *cluster.Signer {
	s := cluster.NewSigner(key)
	s.Now = func() time.Time { return at }
	return s
}

func ts(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }

func TestSignMatchesTheContract(t *testing.T) {
	t.Parallel()
	body := []byte(`{"recipients":[]}`)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("POST\n" + path + "\n" + ts(now) + "\n"))
	m.Write(body)
	want := hex.EncodeToString(m.Sum(nil))
	if got := cluster.NewSigner(secret).Sign("POST", path, ts(now), body); got != want {
		t.Fatalf("Sign = %s, want lower-case hex HMAC-SHA256 of METHOD\\nPATH\\nTIMESTAMP\\nBODY = %s", got, want)
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	body := []byte(`{"message":{"id":"m1"},"recipients":[{"user_id":"u","conn_ids":["c"]}]}`)
	sign := func(key, method, p string, at time.Time, b []byte) (string, string) {
		return ts(at), cluster.NewSigner(key).Sign(method, p, ts(at), b)
	}
	type input struct {
		method, path, timestamp, signature string
		body                               []byte
	}
	resign := func(key string, at time.Time) func(*input) {
		return func(in *input) { in.timestamp, in.signature = sign(key, "POST", path, at, body) }
	}
	good := func() input {
		stamp, sig := sign(secret, "POST", path, now, body)
		return input{"POST", path, stamp, sig, body}
	}
	for _, tc := range []struct {
		name   string
		mutate func(*input)
		ok     bool
	}{
		{"round trip", func(*input) {}, true},
		{"empty body GET", func(in *input) {
			in.method, in.path, in.body = "GET", "/internal/v1/connections", nil
			in.timestamp, in.signature = sign(secret, "GET", in.path, now, nil)
		}, true},
		{"29 s old", resign(secret, now.Add(-29*time.Second)), true},
		{"29 s ahead", resign(secret, now.Add(29*time.Second)), true},
		{"30 s old", resign(secret, now.Add(-30*time.Second)), true},
		{"31 s old", resign(secret, now.Add(-31*time.Second)), false},
		{"31 s ahead", resign(secret, now.Add(31*time.Second)), false},
		{"an hour old", resign(secret, now.Add(-time.Hour)), false},
		{"wrong secret", resign(secret+"x", now), false},
		{"wrong method", func(in *input) { in.method = "PUT" }, false},
		{"method case matters", func(in *input) { in.method = "post" }, false},
		{"wrong path", func(in *input) { in.path = "/internal/v1/disconnect" }, false},
		{"path with a query", func(in *input) { in.path += "?x=1" }, false},
		{"wrong body", func(in *input) { in.body = append(bytes.Clone(in.body), ' ') }, false},
		{"no body", func(in *input) { in.body = nil }, false},
		{"timestamp changed after signing", func(in *input) { in.timestamp = ts(now.Add(time.Second)) }, false},
		{"missing signature", func(in *input) { in.signature = "" }, false},
		{"missing timestamp", func(in *input) { in.timestamp = "" }, false},
		{"timestamp not decimal", func(in *input) { in.timestamp = "0x" + strconv.FormatInt(now.Unix(), 16) }, false},
		{"timestamp with a fraction", func(in *input) { in.timestamp += ".5" }, false},
		{"signature not hex", func(in *input) { in.signature = strings.Repeat("z", 64) }, false},
		{"signature truncated", func(in *input) { in.signature = in.signature[:62] }, false},
		{"signature with an extra byte", func(in *input) { in.signature += "00" }, false},
		{"signature of odd length", func(in *input) { in.signature = in.signature[:63] }, false},
		// Section 5 says lower-case hex; hex.Decode alone takes upper case too.
		{"signature in upper case", func(in *input) { in.signature = strings.ToUpper(in.signature) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := good()
			tc.mutate(&in)
			err := signerAt(secret, now).Verify(in.method, in.path, in.timestamp, in.signature, in.body)
			if tc.ok && err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if !tc.ok && !errors.Is(err, cluster.ErrBadSignature) {
				t.Fatalf("Verify = %v, want ErrBadSignature", err)
			}
		})
	}
}

func TestSignRequest(t *testing.T) {
	t.Parallel()
	body := []byte(`{"user_id":"u1"}`)
	req := httptest.NewRequest("POST", "http://10.0.0.2:9080/internal/v1/disconnect?debug=1", bytes.NewReader(body))
	signerAt(secret, now).SignRequest(req, body)
	if got := req.Header.Get(cluster.HeaderTimestamp); got != ts(now) {
		t.Fatalf("%s = %q, want %s", cluster.HeaderTimestamp, got, ts(now))
	}
	// The query string is not signed; the receiver verifies the path alone.
	if err := signerAt(secret, now.Add(5*time.Second)).Verify("POST", "/internal/v1/disconnect",
		req.Header.Get(cluster.HeaderTimestamp), req.Header.Get(cluster.HeaderSignature), body); err != nil {
		t.Fatalf("Verify of a signed request: %v", err)
	}
	if sig := req.Header.Get(cluster.HeaderSignature); sig != strings.ToLower(sig) || len(sig) != 64 {
		t.Fatalf("signature %q: want 64 lower-case hex digits", sig)
	}
}

func TestMiddleware(t *testing.T) {
	t.Parallel()
	body := []byte(`{"session_hash":"abc"}`)
	signed := func(at time.Time, key string, mutate func(*http.Request)) *http.Request {
		req := httptest.NewRequest("POST", "http://internal"+path+"?q=1", bytes.NewReader(body))
		signerAt(key, at).SignRequest(req, body)
		if mutate != nil {
			mutate(req)
		}
		return req
	}
	for _, tc := range []struct {
		name string
		req  *http.Request
		ok   bool
	}{
		{"signed", signed(now, secret, nil), true},
		{"signed 29 s ago", signed(now.Add(-29*time.Second), secret, nil), true},
		{"unsigned", httptest.NewRequest("POST", "http://internal"+path, bytes.NewReader(body)), false},
		{"stale", signed(now.Add(-31*time.Second), secret, nil), false},
		{"from the future", signed(now.Add(31*time.Second), secret, nil), false},
		{"wrong secret", signed(now, "another secret of at least 32 bytes!!", nil), false},
		{"body swapped", signed(now, secret, func(r *http.Request) {
			r.Body = io.NopCloser(strings.NewReader(`{"user_id":"victim"}`))
		}), false},
		{"path swapped", signed(now, secret, func(r *http.Request) { r.URL.Path = "/internal/v1/deliver2" }), false},
		{"method swapped", signed(now, secret, func(r *http.Request) { r.Method = "PUT" }), false},
		{"signature header dropped", signed(now, secret, func(r *http.Request) { r.Header.Del(cluster.HeaderSignature) }), false},
		{"timestamp header dropped", signed(now, secret, func(r *http.Request) { r.Header.Del(cluster.HeaderTimestamp) }), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			called := false
			var seen []byte
			h := signerAt(secret, now).Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				called = true
				seen, _ = io.ReadAll(r.Body)
				w.WriteHeader(http.StatusOK)
			}))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, tc.req)
			if tc.ok {
				if !called || rec.Code != http.StatusOK || !bytes.Equal(seen, body) {
					t.Fatalf("called %v, status %d, handler read %q: want the handler to run with the body", called, rec.Code, seen)
				}
				return
			}
			if called {
				t.Fatal("the handler ran for a request that does not verify")
			}
			if rec.Code != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401", rec.Code)
			}
			var out map[string]map[string]string
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out["error"]["code"] != "bad_signature" || len(out) != 1 {
				t.Fatalf("body %s: want {\"error\":{\"code\":\"bad_signature\",...}} (%v)", rec.Body, err)
			}
		})
	}

	t.Run("an unsigned body over the limit is 401, not 413", func(t *testing.T) {
		t.Parallel()
		big := bytes.Repeat([]byte("x"), 4<<20+1)
		req := httptest.NewRequest("POST", "http://internal"+path, bytes.NewReader(big))
		rec := httptest.NewRecorder()
		signerAt(secret, now).Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})).ServeHTTP(rec, req)
		if rec.Code != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401 bad_signature: a missing signature is told before the size", rec.Code)
		}
	})

	t.Run("a well-formed wrong signature over a body over the limit is 401, not 413", func(t *testing.T) {
		t.Parallel()
		for _, size := range []int{4<<20 + 1, 16<<20 + 1} {
			big := bytes.Repeat([]byte("x"), size)
			req := httptest.NewRequest("POST", "http://internal"+path, bytes.NewReader(big))
			signerAt("another secret", now).SignRequest(req, big)
			called := false
			rec := httptest.NewRecorder()
			signerAt(secret, now).Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called = true })).ServeHTTP(rec, req)
			if called || rec.Code != http.StatusUnauthorized {
				t.Fatalf("%d bytes: called %v, status %d; want 401 bad_signature: only a caller with the secret learns the size limit", size, called, rec.Code)
			}
		}
	})

	t.Run("a body over the limit is refused unread by the handler", func(t *testing.T) {
		t.Parallel()
		big := bytes.Repeat([]byte("x"), 4<<20+1)
		req := httptest.NewRequest("POST", "http://internal"+path, bytes.NewReader(big))
		signerAt(secret, now).SignRequest(req, big)
		called := false
		h := signerAt(secret, now).Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called = true }))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if called || rec.Code != http.StatusRequestEntityTooLarge {
			t.Fatalf("called %v, status %d; want 413 without the handler", called, rec.Code)
		}
	})
}

// FuzzVerify: Verify never panics, accepts what Sign made (within the skew), and
// refuses anything else as ErrBadSignature.
func FuzzVerify(f *testing.F) {
	f.Add("POST", path, int64(0), "", []byte(`{}`))
	f.Add("GET", "/internal/v1/connections", int64(-29), "", []byte(nil))
	f.Add("POST", path, int64(31), "00", []byte("x"))
	f.Add("POST", "/", int64(-31), strings.Repeat("f", 64), []byte("\x00\n"))
	f.Add("", "", int64(1<<62), "zz", []byte("\n\n\n"))
	f.Fuzz(func(t *testing.T, method, p string, skew int64, sig string, body []byte) {
		s := signerAt(secret, now)
		stamp := strconv.FormatInt(now.Unix()+skew%100_000, 10)
		fresh := skew%100_000 >= -30 && skew%100_000 <= 30
		good := s.Sign(method, p, stamp, body)
		err := s.Verify(method, p, stamp, good, body)
		if fresh && err != nil {
			t.Fatalf("Verify of a fresh signature: %v", err)
		}
		if !fresh && !errors.Is(err, cluster.ErrBadSignature) {
			t.Fatalf("Verify of a stale signature: %v", err)
		}
		// An arbitrary signature passes only if it is the right MAC in lower-case hex
		// (the same MAC in upper case is refused, as section 5 says lower case).
		err = s.Verify(method, p, stamp, sig, body)
		match := sig == good && fresh
		if match != (err == nil) {
			t.Fatalf("Verify(sig %q) = %v, want match=%v", sig, err, match)
		}
		if err != nil && !errors.Is(err, cluster.ErrBadSignature) {
			t.Fatalf("error %v is not ErrBadSignature", err)
		}
		// Arbitrary timestamps never panic.
		_ = s.Verify(method, p, sig, good, body)
	})
}

func BenchmarkSign(b *testing.B) {
	s := cluster.NewSigner(secret)
	body := bytes.Repeat([]byte(`{"user_id":"01890000-0000-7000-8000-00000000000a","conn_ids":["c1"]},`), 20)
	stamp := ts(now)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		_ = s.Sign("POST", path, stamp, body)
	}
}

func BenchmarkVerify(b *testing.B) {
	s := signerAt(secret, now)
	body := bytes.Repeat([]byte(`{"user_id":"01890000-0000-7000-8000-00000000000a","conn_ids":["c1"]},`), 20)
	stamp := ts(now)
	sig := s.Sign("POST", path, stamp, body)
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Verify("POST", path, stamp, sig, body); err != nil {
			b.Fatal(err)
		}
	}
}
