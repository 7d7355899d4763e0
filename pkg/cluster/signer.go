// Package cluster connects socket hosts: the HMAC signer of host-to-host calls, the
// view of live hosts, the presence registry of this host's sockets, the deliverer that
// hands messages to other hosts (one signed call per host, pooled, bounded retries) and
// the internal listener that receives them.
package cluster

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Headers of a signed internal call.
const (
	HeaderTimestamp = "X-Chat-Timestamp"
	HeaderSignature = "X-Chat-Signature"
)

// MaxSkew is how far a call's timestamp may be from the receiver's clock.
const MaxSkew = 30 * time.Second

// ErrBadSignature is returned by Verify for a missing or wrong signature or a stale
// timestamp.
var ErrBadSignature = errors.New("bad signature")

// Signer signs and verifies internal calls: lower-case hex HMAC-SHA256 keyed with the
// cluster secret over METHOD\nPATH\nTIMESTAMP\nBODY.
type Signer struct {
	key []byte
	// Now lets tests move the clock.
	Now func() time.Time
	// macs holds keyed HMACs for reuse: hmac.New with its key schedule and the
	// conversions of each part to []byte cost 14 allocations a call, and every
	// delivery to another host is signed once and verified once.
	macs sync.Pool
}

// macState is one reusable HMAC with its scratch space.
type macState struct {
	h   hash.Hash
	buf []byte // METHOD\nPATH\nTIMESTAMP\n
	sum []byte
}

// NewSigner returns a Signer for secret.
func NewSigner(secret string) *Signer {
	return &Signer{key: []byte(secret), Now: time.Now}
}

// Sign returns the hex signature of one call.
func (s *Signer) Sign(method, path, timestamp string, body []byte) string {
	var sum [sha256.Size]byte
	s.mac(&sum, method, path, timestamp, body)
	var out [2 * sha256.Size]byte
	hex.Encode(out[:], sum[:])
	return string(out[:])
}

// mac puts the HMAC of one call into sum.
func (s *Signer) mac(sum *[sha256.Size]byte, method, path, timestamp string, body []byte) {
	_, _ = s.macStream(sum, method, path, timestamp, body, nil)
}

// macStream is mac over a body of head followed by what rest holds (nil: nothing),
// read through the HMAC without being kept. It returns how much it read of rest.
func (s *Signer) macStream(sum *[sha256.Size]byte, method, path, timestamp string, head []byte, rest io.Reader) (int64, error) {
	st, _ := s.macs.Get().(*macState)
	if st == nil {
		st = &macState{h: hmac.New(sha256.New, s.key)}
	}
	st.buf = append(st.buf[:0], method...)
	st.buf = append(st.buf, '\n')
	st.buf = append(st.buf, path...)
	st.buf = append(st.buf, '\n')
	st.buf = append(st.buf, timestamp...)
	st.buf = append(st.buf, '\n')
	st.h.Reset()
	st.h.Write(st.buf)
	st.h.Write(head)
	var n int64
	var err error
	if rest != nil {
		n, err = io.Copy(st.h, rest)
	}
	st.sum = st.h.Sum(st.sum[:0])
	copy(sum[:], st.sum)
	s.macs.Put(st)
	return n, err
}

// SignRequest sets the timestamp and signature headers of req, whose body is body.
func (s *Signer) SignRequest(req *http.Request, body []byte) {
	ts := strconv.FormatInt(s.Now().Unix(), 10)
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, s.Sign(req.Method, req.URL.Path, ts, body))
}

// Verify checks a call's signature in constant time and its timestamp against MaxSkew.
func (s *Signer) Verify(method, path, timestamp, signature string, body []byte) error {
	if !s.plausible(timestamp, signature) {
		return ErrBadSignature
	}
	var got, want [sha256.Size]byte
	if _, err := hex.Decode(got[:], []byte(signature)); err != nil {
		return ErrBadSignature
	}
	s.mac(&want, method, path, timestamp, body)
	if !hmac.Equal(got[:], want[:]) {
		return ErrBadSignature
	}
	return nil
}

// plausible checks what can be checked without the body: a timestamp within MaxSkew
// and a signature of 64 lower-case hex digits (contract section 5 names lower-case
// hex; hex.Decode alone would take upper case too). The middleware asks it first, so
// an unsigned or stale call is 401 whatever its body, never 413.
func (s *Signer) plausible(timestamp, signature string) bool {
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil || len(signature) != 2*sha256.Size {
		return false
	}
	skew := s.Now().Sub(time.Unix(ts, 0))
	if skew > MaxSkew || skew < -MaxSkew {
		return false
	}
	for i := 0; i < len(signature); i++ {
		if c := signature[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// maxInternalBody bounds an internal call's body: a message to 1,000 recipients with
// their connection ids fits well within it.
const maxInternalBody = 4 << 20

// Middleware refuses every request whose signature does not verify with 401
// bad_signature, before the handler runs; the body is read once and handed on.
func (s *Signer) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.plausible(r.Header.Get(HeaderTimestamp), r.Header.Get(HeaderSignature)) {
			writeError(w, http.StatusUnauthorized, "bad_signature", "missing or wrong signature, or stale timestamp")
			return
		}
		body, err := readBody(r.Body, r.ContentLength, maxInternalBody+1)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid_request", "could not read the body")
			return
		}
		if len(body) > maxInternalBody {
			// Too large to run. Only a caller with the secret may learn that: anyone
			// else is told its signature is wrong, as for any other body.
			if s.verifyOversized(r, body) {
				writeError(w, http.StatusRequestEntityTooLarge, "too_large", "body too large")
			} else {
				writeError(w, http.StatusUnauthorized, "bad_signature", "missing or wrong signature, or stale timestamp")
			}
			return
		}
		if err := s.Verify(r.Method, r.URL.Path, r.Header.Get(HeaderTimestamp), r.Header.Get(HeaderSignature), body); err != nil {
			writeError(w, http.StatusUnauthorized, "bad_signature", "missing or wrong signature, or stale timestamp")
			return
		}
		r.Body = &verifiedBody{Reader: bytes.NewReader(body), data: body}
		next.ServeHTTP(w, r)
	})
}

// oversizedHashed bounds how much of a body over maxInternalBody is read to check its
// signature; a body longer still cannot be verified, and is refused as unsigned.
const oversizedHashed = 4 * maxInternalBody

// verifyOversized checks the signature of a body that starts with head, reading the
// rest through the HMAC without keeping it.
func (s *Signer) verifyOversized(r *http.Request, head []byte) bool {
	var got, want [sha256.Size]byte
	if _, err := hex.Decode(got[:], []byte(r.Header.Get(HeaderSignature))); err != nil {
		return false
	}
	n, err := s.macStream(&want, r.Method, r.URL.Path, r.Header.Get(HeaderTimestamp), head,
		io.LimitReader(r.Body, oversizedHashed-int64(len(head))+1))
	if err != nil || int64(len(head))+n > oversizedHashed {
		return false
	}
	return hmac.Equal(got[:], want[:])
}

// verifiedBody is a request body the middleware has read and verified; handlers take
// its bytes (requestBody) instead of copying them again.
type verifiedBody struct {
	*bytes.Reader
	data []byte
}

// Close implements io.ReadCloser.
func (*verifiedBody) Close() error { return nil }

// requestBody returns the bytes of r's body.
func requestBody(r *http.Request) ([]byte, error) {
	if vb, ok := r.Body.(*verifiedBody); ok {
		return vb.data, nil
	}
	return io.ReadAll(io.LimitReader(r.Body, maxInternalBody))
}
