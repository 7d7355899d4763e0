package securitytest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/cluster"
	"github.com/switchboard-chat/switchboard/pkg/hosttest"
)

// TestBadInputInternal calls the internal listener with every kind of bad signature and
// checks that each answers 401 bad_signature and does nothing: the live socket the call
// names stays open and receives nothing, and no store changes. Timestamps 29 s off
// either way are accepted (the limit is 30 s), proving the refusals are about the
// signature and not the harness.
func TestBadInputInternal(t *testing.T) {
	t.Parallel()
	s := newStack(t, 1, nil)
	h := s.h()
	alice, bob := h.newUser(t, "alice"), h.newUser(t, "bob")
	th := h.newThread(t, alice, "ours", bob)
	h.send(t, alice, th.ID, "one")
	w := h.dial(t, bob)

	good := cluster.NewSigner(s.Secret)
	other := cluster.NewSigner(hosttest.RandomHex(32))
	empty := cluster.NewSigner("")
	// Rows are built before any runs, so an "ahead" stamp loses the seconds the rows
	// before it take: 40 s ahead stays outside the 30 s window on a slow run.
	stamp := func(off time.Duration) string { return strconv.FormatInt(time.Now().Add(off).Unix(), 10) }

	fake := chat.Message{ID: chat.NewID(), ThreadID: th.ID, Seq: 2, SenderID: alice.ID, ClientMsgID: "forged", Body: "forged message", CreatedAt: time.Now().UTC()}
	deliverMsg := mustJSON(map[string]any{"message": fake, "recipients": []chat.Recipient{{UserID: bob.ID, ConnIDs: []string{w.ConnID}}}})
	deliverTyping := mustJSON(map[string]any{"typing": map[string]string{"thread_id": th.ID, "user_id": alice.ID}, "recipients": []chat.Recipient{{UserID: bob.ID}}})
	disconnectUser := mustJSON(map[string]string{"user_id": bob.ID})
	disconnectSession := mustJSON(map[string]string{"session_hash": chat.HashToken(bob.Token)})

	type call struct {
		method, path string
		body         []byte
		ts           string // X-Chat-Timestamp; "-" sends none
		sig          string // X-Chat-Signature; "-" sends none
	}
	// signed is a call whose signature is made by signer over (method, path, ts, body)
	// as given in over, but sent as c.
	signed := func(signer *cluster.Signer, c call, over call) call {
		c.sig = signer.Sign(over.method, over.path, over.ts, over.body)
		return c
	}
	disc := func(body []byte, ts string) call {
		return call{method: "POST", path: cluster.PathDisconnect, body: body, ts: ts}
	}
	nowUnix := time.Now().Unix()
	now := strconv.FormatInt(nowUnix, 10)
	plainHash := sha256.Sum256(disconnectUser)
	sig := good.Sign("POST", cluster.PathDisconnect, now, disconnectUser)

	rows := []struct {
		name string
		c    call
	}{
		{"disconnect a user: unsigned", call{method: "POST", path: cluster.PathDisconnect, body: disconnectUser, ts: "-", sig: "-"}},
		{"disconnect a session: unsigned", call{method: "POST", path: cluster.PathDisconnect, body: disconnectSession, ts: "-", sig: "-"}},
		{"disconnect: signed with another secret", signed(other, disc(disconnectUser, now), disc(disconnectUser, now))},
		{"disconnect: signed with an empty secret", signed(empty, disc(disconnectUser, now), disc(disconnectUser, now))},
		{"disconnect: signature of another body", signed(good, disc(disconnectUser, now), disc([]byte(`{"user_id":"nobody"}`), now))},
		{"disconnect: signature of another path", signed(good, disc(disconnectUser, now), call{method: "POST", path: cluster.PathDeliver, body: disconnectUser, ts: now})},
		{"disconnect: signature of another method", signed(good, disc(disconnectUser, now), call{method: "GET", path: cluster.PathDisconnect, body: disconnectUser, ts: now})},
		{"disconnect: signature of another timestamp", signed(good, disc(disconnectUser, now), disc(disconnectUser, strconv.FormatInt(nowUnix-1, 10)))},
		{"disconnect: timestamp 31 s old", func() call { c := disc(disconnectUser, stamp(-31*time.Second)); return signed(good, c, c) }()},
		{"disconnect: timestamp 40 s ahead", func() call { c := disc(disconnectUser, stamp(40*time.Second)); return signed(good, c, c) }()},
		{"disconnect: timestamp a day old", func() call { c := disc(disconnectUser, stamp(-24*time.Hour)); return signed(good, c, c) }()},
		{"disconnect: timestamp in milliseconds", func() call {
			c := disc(disconnectUser, strconv.FormatInt(time.Now().UnixMilli(), 10))
			return signed(good, c, c)
		}()},
		{"disconnect: timestamp not a number", func() call { c := disc(disconnectUser, "now"); return signed(good, c, c) }()},
		{"disconnect: timestamp missing", func() call { c := disc(disconnectUser, ""); c = signed(good, c, c); c.ts = "-"; return c }()},
		{"disconnect: signature missing", call{method: "POST", path: cluster.PathDisconnect, body: disconnectUser, ts: now, sig: "-"}},
		{"disconnect: signature empty", call{method: "POST", path: cluster.PathDisconnect, body: disconnectUser, ts: now, sig: ""}},
		{"disconnect: signature not hex", call{method: "POST", path: cluster.PathDisconnect, body: disconnectUser, ts: now, sig: "zz" + sig[2:]}},
		{"disconnect: signature cut to half", call{method: "POST", path: cluster.PathDisconnect, body: disconnectUser, ts: now, sig: sig[:32]}},
		{"disconnect: signature one hex digit off", call{method: "POST", path: cluster.PathDisconnect, body: disconnectUser, ts: now, sig: flipLast(sig)}},
		{"disconnect: plain SHA-256 of the body, no key", call{method: "POST", path: cluster.PathDisconnect, body: disconnectUser, ts: now, sig: hex.EncodeToString(plainHash[:])}},
		{"deliver a message: unsigned", call{method: "POST", path: cluster.PathDeliver, body: deliverMsg, ts: "-", sig: "-"}},
		{"deliver a message: signed with another secret", func() call {
			c := call{method: "POST", path: cluster.PathDeliver, body: deliverMsg, ts: now}
			return signed(other, c, c)
		}()},
		{"deliver a message: timestamp 31 s old", func() call {
			c := call{method: "POST", path: cluster.PathDeliver, body: deliverMsg, ts: stamp(-31 * time.Second)}
			return signed(good, c, c)
		}()},
		{"deliver a message: timestamp 40 s ahead", func() call {
			c := call{method: "POST", path: cluster.PathDeliver, body: deliverMsg, ts: stamp(40 * time.Second)}
			return signed(good, c, c)
		}()},
		{"deliver typing: unsigned", call{method: "POST", path: cluster.PathDeliver, body: deliverTyping, ts: "-", sig: "-"}},
		{"deliver typing: signature of another body", func() call {
			c := call{method: "POST", path: cluster.PathDeliver, body: deliverTyping, ts: now}
			return signed(good, c, call{method: "POST", path: cluster.PathDeliver, body: []byte(`{}`), ts: now})
		}()},
		{"connections: unsigned", call{method: "GET", path: cluster.PathConnections, ts: "-", sig: "-"}},
		{"connections: signed with another secret", func() call {
			c := call{method: "GET", path: cluster.PathConnections, ts: now}
			return signed(other, c, c)
		}()},
		{"an unknown route, unsigned, learns nothing (401, not 404)", call{method: "GET", path: "/internal/v1/nothing", ts: "-", sig: "-"}},
		{"pprof, unsigned", call{method: "GET", path: "/debug/pprof/", ts: "-", sig: "-"}},
	}

	do := func(t *testing.T, c call) reply {
		t.Helper()
		hdr := http.Header{}
		if c.ts != "-" {
			hdr.Set(cluster.HeaderTimestamp, c.ts)
		}
		if c.sig != "-" {
			hdr.Set(cluster.HeaderSignature, c.sig)
		}
		var body any
		if c.body != nil {
			body = c.body
		}
		r, err := doHTTP(h.Client, h.InternalURL, req{Method: c.method, Path: c.path, Body: body, Header: hdr})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			before := s.snapshot(t)
			hosttest.WantError(t, do(t, tc.c), http.StatusUnauthorized, "bad_signature")
			if got := w.roundTrip(t); len(got) != 0 {
				t.Errorf("the socket received %v, want nothing", got)
			}
			wantUnchanged(t, before, s.snapshot(t))
		})
	}

	// At the limit: 29 s off either way is accepted.
	for _, off := range []time.Duration{-29 * time.Second, 29 * time.Second} {
		t.Run(fmt.Sprintf("timestamp %s off is accepted", off), func(t *testing.T) {
			c := call{method: "POST", path: cluster.PathDisconnect, body: mustJSON(map[string]string{"user_id": chat.NewID()}), ts: stamp(off)}
			r := do(t, signed(good, c, c))
			hosttest.WantStatus(t, r, http.StatusOK)
			if err := wantJSON(`{"closed":0}`)(r); err != nil {
				t.Error(err)
			}
			c = call{method: "POST", path: cluster.PathDeliver, body: deliverTyping, ts: stamp(off)}
			hosttest.WantStatus(t, do(t, signed(good, c, c)), http.StatusOK)
			got := w.roundTrip(t)
			if len(got) != 1 || got[0].typ() != "typing" || got[0].str("user_id") != alice.ID {
				t.Errorf("the socket received %v, want alice's typing", got)
			}
		})
	}
	// And a signed disconnect does close the socket: the refusals above were real.
	t.Run("a signed disconnect closes the socket 4001", func(t *testing.T) {
		c := call{method: "POST", path: cluster.PathDisconnect, body: disconnectUser, ts: stamp(0)}
		r := do(t, signed(good, c, c))
		hosttest.WantStatus(t, r, http.StatusOK)
		if err := wantJSON(`{"closed":1}`)(r); err != nil {
			t.Error(err)
		}
		w.wantClose(t, 4001, 3*time.Second)
	})
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// flipLast changes the last hex digit of s.
func flipLast(s string) string {
	last := s[len(s)-1]
	if last == '0' {
		return s[:len(s)-1] + "1"
	}
	return s[:len(s)-1] + "0"
}
