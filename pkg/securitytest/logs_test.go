package securitytest

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/cluster"
	"github.com/switchboard-chat/switchboard/pkg/hosttest"
)

// TestNoSecretsInLogs runs a full scenario on two hosts logging JSON at debug level:
// registrations, logins (Bearer and cookie), failed logins (wrong passwords, unknown
// users, a 73-byte password), threads, sends over HTTP and WebSocket delivered across
// hosts, badly signed internal calls, logout on one host closing sockets on the other;
// then `chatd serve` from the built binary with a short secret and with store URLs
// holding passwords. No log line and no line of chatd's output may hold a token, a
// session hash, a password, a password hash, or a cluster secret or store password.
// (TestMain sweeps the logs of every other test of the run the same way.)
func TestNoSecretsInLogs(t *testing.T) {
	t.Parallel()
	s := newStack(t, 2, nil)
	h1, h2 := s.hosts[0], s.hosts[1]
	secrets := map[string]string{s.Secret: "cluster secret", testPassword: "password"}
	secret := func(what, v string) string {
		secrets[v] = what
		watch.secret(what, v)
		return v
	}

	// Accounts and sessions.
	alice, bob := h1.newUser(t, "alice"), h2.newUser(t, "bob")
	cookie := h2.session(t, alice)
	for _, u := range []user{alice, bob, cookie} {
		secret("token", u.Token)
		secret("session hash", chat.HashToken(u.Token))
	}
	own := secret("password", "own-"+hosttest.RandomHex(8))
	hosttest.WantStatus(t, h1.do(t, req{Method: "POST", Path: "/api/v1/auth/register", Body: credentials("carol", own)}), http.StatusCreated)
	var hashes []string
	rows, err := s.sql.QueryContext(context.Background(), `SELECT password_hash FROM users`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var h string
		_ = rows.Scan(&h)
		hashes = append(hashes, h)
		secret("password hash", h)
		secret("password hash's salt and digest", h[7:])
	}
	_ = rows.Close()

	// Failed logins.
	for i, h := range []*node{h1, h2, h1} {
		wrong := secret("wrong password", "wrong-"+hosttest.RandomHex(8))
		names := []string{alice.Username, "nobody-" + hosttest.RandomHex(4), strings.ToUpper(bob.Username)}
		hosttest.WantError(t, h.do(t, req{Method: "POST", Path: "/api/v1/auth/login", Body: credentials(names[i], wrong)}), http.StatusUnauthorized, "invalid_credentials")
	}
	long := secret("long password", "long-"+hosttest.RandomHex(34)) // 73 bytes
	hosttest.WantError(t, h1.do(t, req{Method: "POST", Path: "/api/v1/auth/register", Body: credentials("dave", long)}), http.StatusBadRequest, "invalid_request")
	hosttest.WantError(t, h1.do(t, req{Method: "POST", Path: "/api/v1/auth/login", Body: credentials("alice_1", long)}), http.StatusBadRequest, "invalid_request")
	hosttest.WantError(t, h2.do(t, req{Method: "GET", Path: "/api/v1/me", Token: secret("made-up token", "forged-"+hosttest.RandomHex(16))}), http.StatusUnauthorized, "unauthenticated")

	// Messages across hosts, both ways.
	th := h1.newThread(t, alice, "logs", bob)
	aw, bw := h1.dial(t, alice), h2.dial(t, bob)
	m := h1.send(t, alice, th.ID, "hello bob")
	if f := bw.untilMessage(t, m.ClientMsgID); f.msg().Body != "hello bob" {
		t.Fatalf("bob got %v", f)
	}
	bw.write(t, map[string]string{"type": "send", "thread_id": th.ID, "client_msg_id": "b1", "body": "hello alice"})
	bw.until(t, "sent")
	aw.untilMessage(t, "b1")
	bw.write(t, map[string]string{"type": "typing", "thread_id": th.ID})
	aw.until(t, "typing")
	hosttest.WantStatus(t, h2.do(t, req{Method: "POST", Path: "/api/v1/threads/" + th.ID + "/read", Cookie: cookie.Token, Body: map[string]int{"seq": 2}}), http.StatusNoContent)
	hosttest.WantStatus(t, h1.do(t, req{Method: "GET", Path: "/api/v1/presence?user_id=" + url.QueryEscape(bob.ID), Token: alice.Token}), http.StatusOK)

	// Badly signed internal calls, one signed right but stale.
	body := mustJSON(map[string]string{"user_id": bob.ID})
	r, err := doHTTP(h2.Client, h2.InternalURL, req{Method: "POST", Path: cluster.PathDisconnect, Body: body, Header: http.Header{
		cluster.HeaderTimestamp: {"1"}, cluster.HeaderSignature: {cluster.NewSigner(s.Secret).Sign("POST", cluster.PathDisconnect, "1", body)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	hosttest.WantError(t, r, http.StatusUnauthorized, "bad_signature")
	r, err = doHTTP(h1.Client, h1.InternalURL, req{Method: "GET", Path: cluster.PathConnections, Header: http.Header{cluster.HeaderSignature: {"00"}}})
	if err != nil {
		t.Fatal(err)
	}
	hosttest.WantError(t, r, http.StatusUnauthorized, "bad_signature")

	// Logout on host 1 closes alice's socket there and a socket of the session on host 2.
	aw2 := h2.dial(t, alice)
	hosttest.WantStatus(t, h1.do(t, req{Method: "POST", Path: "/api/v1/auth/logout", Token: alice.Token}), http.StatusNoContent)
	aw.wantClose(t, 4001, 3*time.Second)
	aw2.wantClose(t, 4001, 3*time.Second)
	hosttest.WantStatus(t, h2.do(t, req{Method: "POST", Path: "/api/v1/auth/logout", Cookie: cookie.Token}), http.StatusNoContent)

	// chatd's own start-up and configuration errors.
	dbPassword := secret("database password", "dbpw"+hosttest.RandomHex(8))
	redisPassword := secret("redis password", "rdpw"+hosttest.RandomHex(8))
	short := secret("short cluster secret", "short"+hosttest.RandomHex(8))
	dbURL, _ := url.Parse(s.DatabaseURL)
	dbURL.User = url.UserPassword(dbURL.User.Username(), dbPassword)
	var outputs []string
	for _, env := range []map[string]string{
		{"CHAT_CLUSTER_SECRET": short},
		{"CHAT_DATABASE_URL": "postgres://chat:" + dbPassword + "@127.0.0.1:1/chat", "CHAT_LOG_LEVEL": "debug", "CHAT_LOG_FORMAT": "json"},
		// A database that answers (its server trusts local connections whatever the
		// password), then a Redis that does not: start-up logs every setting.
		{"CHAT_DATABASE_URL": dbURL.String(), "CHAT_REDIS_URL": "redis://:" + redisPassword + "@127.0.0.1:1/0", "CHAT_AUTO_MIGRATE": "false", "CHAT_LOG_LEVEL": "debug", "CHAT_LOG_FORMAT": "json"},
		{"CHAT_DATABASE_URL": "mysql://root:" + dbPassword + "@127.0.0.1/x"},
		{"CHAT_DATABASE_URL": dbURL.String(), "CHAT_AUTO_MIGRATE": "false", "CHAT_REDIS_URL": "redis://:" + redisPassword + "@127.0.0.1:1/0", "CHAT_REDIS_ADDRS": "127.0.0.1:1,127.0.0.1:2"},
	} {
		if env["CHAT_CLUSTER_SECRET"] == "" {
			env["CHAT_CLUSTER_SECRET"] = s.Secret
		}
		res := runChatd(t, serveEnv(env), "serve")
		if res.Code == 0 {
			t.Errorf("chatd serve with %v succeeded", env)
		}
		outputs = append(outputs, res.Stdout+res.Stderr)
	}
	if !strings.Contains(outputs[2], `"msg":"starting"`) {
		t.Errorf("chatd serve did not log its settings: the sweep saw the wrong output:\n%s", outputs[2])
	}
	// With both set, Redis Cluster is what was dialled, and the error says so.
	if !strings.Contains(outputs[4], "chatd: CHAT_REDIS_ADDRS: redis at [127.0.0.1:1 127.0.0.1:2] unreachable") {
		t.Errorf("an unreachable Redis Cluster is not blamed on CHAT_REDIS_ADDRS:\n%s", outputs[4])
	}

	var leaks []string
	for _, h := range s.hosts {
		leaks = append(leaks, findSecrets(h.Logs.String(), secrets, h.Name)...)
	}
	for i, out := range outputs {
		leaks = append(leaks, findSecrets(out, secrets, fmt.Sprintf("chatd run %d", i+1))...)
	}
	for _, l := range leaks {
		t.Error(l)
	}
	if !strings.Contains(h1.Logs.String(), `"level":"DEBUG"`) || len(hashes) == 0 {
		t.Errorf("the hosts logged nothing at debug level: the sweep saw the wrong logs")
	}
}
