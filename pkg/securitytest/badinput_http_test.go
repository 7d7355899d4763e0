package securitytest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/hosttest"
)

// nested returns v wrapped in depth JSON arrays.
func nested(depth int, v string) string {
	return strings.Repeat("[", depth) + v + strings.Repeat("]", depth)
}

// TestBadInputHTTP feeds the public API one bad input per row and checks, for every
// row, the exact answer and that nothing changed in PostgreSQL (every row of every
// table) or Redis (every key under the test's prefix but rate-limit buckets and
// heartbeat times).
func TestBadInputHTTP(t *testing.T) {
	t.Parallel()
	s := newStack(t, 1, nil)
	h := s.h()
	alice, bob, carol := h.newUser(t, "alice"), h.newUser(t, "bob"), h.newUser(t, "carol")
	th := h.newThread(t, alice, "ours", bob)
	h.send(t, alice, th.ID, "one")
	h.send(t, bob, th.ID, "two")
	theirs := h.newThread(t, carol, "theirs")
	T, C := th.ID, theirs.ID
	const missing = "0190aaaa-bbbb-7ccc-8ddd-eeeeeeeeeeee" // a well-formed id of nothing
	pw := testPassword

	cred := func(username, password string) string {
		b, _ := json.Marshal(map[string]string{"username": username, "password": password})
		return string(b)
	}
	register := func(body string) req { return req{Method: "POST", Path: "/api/v1/auth/register", Body: body} }
	login := func(body string) req { return req{Method: "POST", Path: "/api/v1/auth/login", Body: body} }
	as := func(u user, method, path string, body any) req {
		return req{Method: method, Path: "/api/v1" + path, Body: body, Token: u.Token}
	}
	twoMiB := `{"username":"dave_big","password":"` + strings.Repeat("p", 2<<20) + `"}`

	rows := []struct {
		name   string
		r      req
		status int
		code   string            // "" for a success answer
		check  func(reply) error // more checks of the answer (optional)
	}{
		// Malformed and truncated JSON.
		{name: "register: malformed JSON", r: register(`{"username":"dave_1" "password":"` + pw + `"}`), status: 400, code: "invalid_request"},
		{name: "register: truncated JSON", r: register(`{"username":"dave_1","password":"` + pw), status: 400, code: "invalid_request"},
		{name: "register: truncated after the key", r: register(`{"username"`), status: 400, code: "invalid_request"},
		{name: "register: empty body", r: register(``), status: 400, code: "invalid_request"},
		{name: "register: JSON null", r: register(`null`), status: 400, code: "invalid_request"},
		{name: "register: an array", r: register(`["dave_1","` + pw + `"]`), status: 400, code: "invalid_request"},
		{name: "register: a string", r: register(`"dave_1"`), status: 400, code: "invalid_request"},
		{name: "register: data after the object", r: register(cred("dave_1", pw) + ` x`), status: 400, code: "invalid_request"},
		{name: "register: two objects", r: register(cred("dave_1", pw) + cred("dave_2", pw)), status: 400, code: "invalid_request"},
		{name: "register: single quotes", r: register(`{'username':'dave_1','password':'` + pw + `'}`), status: 400, code: "invalid_request"},
		{name: "register: invalid escape", r: register(`{"username":"dave\q1","password":"` + pw + `"}`), status: 400, code: "invalid_request"},
		{name: "login: truncated JSON", r: login(`{"username":"alice_1","pass`), status: 400, code: "invalid_request"},
		{name: "create thread: truncated JSON", r: as(alice, "POST", "/threads", `{"name":"x","members":["`+bob.Username), status: 400, code: "invalid_request"},
		{name: "add member: malformed JSON", r: as(alice, "POST", "/threads/"+T+"/members", `{username: "`+carol.Username+`"}`), status: 400, code: "invalid_request"},
		{name: "send: truncated JSON", r: as(bob, "POST", "/threads/"+T+"/messages", `{"client_msg_id":"t1","body":"hel`), status: 400, code: "invalid_request"},
		{name: "read: malformed JSON", r: as(bob, "POST", "/threads/"+T+"/read", `{seq:1}`), status: 400, code: "invalid_request"},

		// Wrong types.
		{name: "register: username a number", r: register(`{"username":12345,"password":"` + pw + `"}`), status: 400, code: "invalid_request"},
		{name: "register: password a boolean", r: register(`{"username":"dave_1","password":true}`), status: 400, code: "invalid_request"},
		{name: "register: password an object", r: register(`{"username":"dave_1","password":{"$ne":""}}`), status: 400, code: "invalid_request"},
		{name: "login: password an array", r: login(`{"username":"` + alice.Username + `","password":["` + pw + `"]}`), status: 400, code: "invalid_request"},
		{name: "create thread: name a number", r: as(alice, "POST", "/threads", `{"name":5,"members":[]}`), status: 400, code: "invalid_request"},
		{name: "create thread: members a string", r: as(alice, "POST", "/threads", `{"name":"x","members":"`+bob.Username+`"}`), status: 400, code: "invalid_request"},
		{name: "create thread: members of numbers", r: as(alice, "POST", "/threads", `{"name":"x","members":[1,2]}`), status: 400, code: "invalid_request"},
		{name: "add member: username an array", r: as(alice, "POST", "/threads/"+T+"/members", `{"username":["`+carol.Username+`"]}`), status: 400, code: "invalid_request"},
		{name: "send: body a number", r: as(bob, "POST", "/threads/"+T+"/messages", `{"client_msg_id":"t2","body":42}`), status: 400, code: "invalid_request"},
		{name: "send: body null", r: as(bob, "POST", "/threads/"+T+"/messages", `{"client_msg_id":"t2","body":null}`), status: 400, code: "invalid_request"},
		{name: "send: client_msg_id a number", r: as(bob, "POST", "/threads/"+T+"/messages", `{"client_msg_id":7,"body":"hi"}`), status: 400, code: "invalid_request"},
		{name: "read: seq a string", r: as(bob, "POST", "/threads/"+T+"/read", `{"seq":"1"}`), status: 400, code: "invalid_request"},
		{name: "read: seq a fraction", r: as(bob, "POST", "/threads/"+T+"/read", `{"seq":1.5}`), status: 400, code: "invalid_request"},
		{name: "read: seq in exponent form", r: as(bob, "POST", "/threads/"+T+"/read", `{"seq":1e2}`), status: 400, code: "invalid_request"},
		{name: "read: seq null", r: as(bob, "POST", "/threads/"+T+"/read", `{"seq":null}`), status: 400, code: "invalid_request"},
		{name: "read: seq missing", r: as(bob, "POST", "/threads/"+T+"/read", `{}`), status: 400, code: "invalid_request"},

		// Unknown fields are ignored: the answer is that of the known fields.
		{name: "read: unknown fields ignored (seq 0 moves nothing)", r: as(bob, "POST", "/threads/"+T+"/read", `{"seq":0,"user_id":"`+carol.ID+`","thread_id":"`+C+`","admin":true}`), status: 204},
		{name: "login: unknown fields ignored (wrong password)", r: login(`{"username":"` + alice.Username + `","password":"wrong-` + pw + `","role":"admin","nested":{"a":[1,{"b":null}]}}`), status: 401, code: "invalid_credentials"},
		{name: "register: unknown fields ignored (bad username)", r: register(`{"username":"x","password":"` + pw + `","id":"` + alice.ID + `"}`), status: 400, code: "invalid_request"},

		// Deep nesting: Go's decoder stops at 10,000 levels, without recursion trouble.
		{name: "register: username nested 10,000 deep", r: register(`{"username":` + nested(10000, `"dave_1"`) + `,"password":"` + pw + `"}`), status: 400, code: "invalid_request"},
		{name: "register: body nested 10,000 deep", r: register(nested(10000, `1`)), status: 400, code: "invalid_request"},
		{name: "send: unknown field nested 10,000 deep", r: as(bob, "POST", "/threads/"+T+"/messages", `{"client_msg_id":"t3","body":"hi","x":`+nested(10000, ``)+`}`), status: 400, code: "invalid_request"},
		{name: "read: objects nested 10,000 deep", r: as(bob, "POST", "/threads/"+T+"/read", strings.Repeat(`{"a":`, 10000)+`1`+strings.Repeat(`}`, 10000)), status: 400, code: "invalid_request"},
		{name: "create thread: nested 100,000 deep", r: as(alice, "POST", "/threads", `{"name":"x","members":`+nested(100000, ``)+`}`), status: 400, code: "invalid_request"},

		// Bodies over 1 MiB.
		{name: "register: 2 MiB body", r: register(twoMiB), status: 413, code: "too_large"},
		{name: "register: 2 MiB body, chunked", r: req{Method: "POST", Path: "/api/v1/auth/register", Body: twoMiB, Chunked: true}, status: 413, code: "too_large"},
		{name: "send: 2 MiB body, chunked", r: req{Method: "POST", Path: "/api/v1/threads/" + T + "/messages", Token: bob.Token, Chunked: true,
			Body: `{"client_msg_id":"t4","body":"` + strings.Repeat("b", 2<<20) + `"}`}, status: 413, code: "too_large"},
		{name: "GET /me with a 2 MiB body", r: req{Method: "GET", Path: "/api/v1/me", Token: bob.Token, Body: twoMiB}, status: 413, code: "too_large"},

		// Wrong Content-Type.
		{name: "register: text/plain", r: req{Method: "POST", Path: "/api/v1/auth/register", Body: cred("dave_1", pw), ContentType: "text/plain"}, status: 415, code: "unsupported_media_type"},
		{name: "login: no Content-Type", r: req{Method: "POST", Path: "/api/v1/auth/login", Body: cred(alice.Username, pw), ContentType: "none"}, status: 415, code: "unsupported_media_type"},
		{name: "create thread: form", r: req{Method: "POST", Path: "/api/v1/threads", Token: alice.Token, Body: "name=x&members=" + bob.Username, ContentType: "application/x-www-form-urlencoded"}, status: 415, code: "unsupported_media_type"},
		{name: "send: multipart", r: req{Method: "POST", Path: "/api/v1/threads/" + T + "/messages", Token: bob.Token, Body: `{"client_msg_id":"t5","body":"hi"}`, ContentType: "multipart/form-data; boundary=x"}, status: 415, code: "unsupported_media_type"},
		{name: "read: application/json-seq", r: req{Method: "POST", Path: "/api/v1/threads/" + T + "/read", Token: bob.Token, Body: `{"seq":2}`, ContentType: "application/json-seq"}, status: 415, code: "unsupported_media_type"},
		{name: "add member: text/json", r: req{Method: "POST", Path: "/api/v1/threads/" + T + "/members", Token: alice.Token, Body: `{"username":"` + carol.Username + `"}`, ContentType: "text/json"}, status: 415, code: "unsupported_media_type"},

		// Wrong method on a known route; unknown routes.
		{name: "PUT /threads", r: as(alice, "PUT", "/threads", `{"name":"x"}`), status: 405, code: "method_not_allowed"},
		{name: "DELETE /me", r: as(alice, "DELETE", "/me", nil), status: 405, code: "method_not_allowed"},
		{name: "GET /auth/login", r: req{Method: "GET", Path: "/api/v1/auth/login"}, status: 405, code: "method_not_allowed"},
		{name: "PATCH /threads/{id}", r: as(alice, "PATCH", "/threads/"+T, `{"name":"renamed"}`), status: 405, code: "method_not_allowed"},
		{name: "DELETE /threads/{id}", r: as(alice, "DELETE", "/threads/"+T, nil), status: 405, code: "method_not_allowed"},
		{name: "GET /threads/{id}/read", r: as(bob, "GET", "/threads/"+T+"/read", nil), status: 405, code: "method_not_allowed"},
		{name: "PUT /threads/{id}/messages", r: as(bob, "PUT", "/threads/"+T+"/messages", `{"client_msg_id":"t6","body":"hi"}`), status: 405, code: "method_not_allowed"},
		{name: "POST /presence", r: as(bob, "POST", "/presence", `{}`), status: 405, code: "method_not_allowed"},
		{name: "unknown route", r: as(bob, "GET", "/admin", nil), status: 404, code: "not_found"},
		{name: "known route with a trailing slash", r: as(bob, "GET", "/me/", nil), status: 404, code: "not_found"},

		// Ids that are not ids (and ids of nothing, or of others' threads).
		{name: "GET thread: not an id", r: as(alice, "GET", "/threads/not-an-id", nil), status: 404, code: "not_found"},
		{name: "GET thread: id in upper case", r: as(alice, "GET", "/threads/"+strings.ToUpper(T), nil), status: 404, code: "not_found"},
		{name: "GET thread: id plus a character", r: as(alice, "GET", "/threads/"+T+"0", nil), status: 404, code: "not_found"},
		{name: "GET thread: id with NUL", r: as(alice, "GET", "/threads/"+T[:35]+"%00", nil), status: 404, code: "not_found"},
		{name: "GET thread: SQL as id", r: as(alice, "GET", "/threads/"+url.PathEscape(`'; DROP TABLE threads;--`), nil), status: 404, code: "not_found"},
		{name: "GET thread: path traversal", r: as(alice, "GET", "/threads/..%2F..%2Fetc%2Fpasswd", nil), status: 404, code: "not_found"},
		{name: "GET thread: an id of nothing", r: as(alice, "GET", "/threads/"+missing, nil), status: 404, code: "not_found"},
		{name: "GET thread: another's thread", r: as(alice, "GET", "/threads/"+C, nil), status: 404, code: "not_found"},
		{name: "history: not an id", r: as(alice, "GET", "/threads/x/messages", nil), status: 404, code: "not_found"},
		{name: "send: not an id", r: as(alice, "POST", "/threads/x/messages", `{"client_msg_id":"t7","body":"hi"}`), status: 404, code: "not_found"},
		{name: "send: an id of nothing", r: as(alice, "POST", "/threads/"+missing+"/messages", `{"client_msg_id":"t7","body":"hi"}`), status: 404, code: "not_found"},
		{name: "read: not an id", r: as(alice, "POST", "/threads/x/read", `{"seq":1}`), status: 404, code: "not_found"},
		{name: "add member: not an id", r: as(alice, "POST", "/threads/x/members", `{"username":"`+carol.Username+`"}`), status: 404, code: "not_found"},
		{name: "remove member: thread not an id", r: as(alice, "DELETE", "/threads/x/members/"+bob.ID, nil), status: 404, code: "not_found"},
		{name: "remove member: user not an id", r: as(alice, "DELETE", "/threads/"+T+"/members/not-an-id", nil), status: 404, code: "not_found"},
		{name: "remove member: user id of nothing", r: as(alice, "DELETE", "/threads/"+T+"/members/"+missing, nil), status: 404, code: "not_found"},
		{name: "presence: ids that are not ids", r: as(alice, "GET", "/presence?user_id=x&user_id="+url.QueryEscape(`' OR 1=1 --`)+"&user_id="+missing, nil), status: 200,
			check: wantJSON(`{"presence":[]}`)},

		// Negative and huge limit, after_seq and before_seq; read marks.
		{name: "history: limit -1", r: as(bob, "GET", "/threads/"+T+"/messages?limit=-1", nil), status: 400, code: "invalid_request"},
		{name: "history: limit 0", r: as(bob, "GET", "/threads/"+T+"/messages?limit=0", nil), status: 400, code: "invalid_request"},
		{name: "history: limit 201", r: as(bob, "GET", "/threads/"+T+"/messages?limit=201", nil), status: 400, code: "invalid_request"},
		{name: "history: limit 2^64", r: as(bob, "GET", "/threads/"+T+"/messages?limit=18446744073709551616", nil), status: 400, code: "invalid_request"},
		{name: "history: limit 1.5", r: as(bob, "GET", "/threads/"+T+"/messages?limit=1.5", nil), status: 400, code: "invalid_request"},
		{name: "history: limit empty", r: as(bob, "GET", "/threads/"+T+"/messages?limit=", nil), status: 400, code: "invalid_request"},
		{name: "history: after_seq -1", r: as(bob, "GET", "/threads/"+T+"/messages?after_seq=-1", nil), status: 400, code: "invalid_request"},
		{name: "history: after_seq 2^63", r: as(bob, "GET", "/threads/"+T+"/messages?after_seq=9223372036854775808", nil), status: 400, code: "invalid_request"},
		{name: "history: after_seq hex", r: as(bob, "GET", "/threads/"+T+"/messages?after_seq=0x10", nil), status: 400, code: "invalid_request"},
		{name: "history: after_seq 2^63-1 is an empty page", r: as(bob, "GET", "/threads/"+T+"/messages?after_seq=9223372036854775807", nil), status: 200,
			check: wantJSON(`{"messages":[],"has_more":false}`)},
		{name: "history: before_seq 0", r: as(bob, "GET", "/threads/"+T+"/messages?before_seq=0", nil), status: 400, code: "invalid_request"},
		{name: "history: before_seq -5", r: as(bob, "GET", "/threads/"+T+"/messages?before_seq=-5", nil), status: 400, code: "invalid_request"},
		{name: "history: after_seq and before_seq", r: as(bob, "GET", "/threads/"+T+"/messages?after_seq=1&before_seq=2", nil), status: 400, code: "invalid_request"},
		{name: "read: seq -1", r: as(bob, "POST", "/threads/"+T+"/read", `{"seq":-1}`), status: 400, code: "invalid_request"},
		{name: "read: seq past last_seq", r: as(bob, "POST", "/threads/"+T+"/read", `{"seq":3}`), status: 400, code: "invalid_request"},
		{name: "read: seq 2^63-1", r: as(bob, "POST", "/threads/"+T+"/read", `{"seq":9223372036854775807}`), status: 400, code: "invalid_request"},
		{name: "read: seq 2^63", r: as(bob, "POST", "/threads/"+T+"/read", `{"seq":9223372036854775808}`), status: 400, code: "invalid_request"},

		// Usernames: spaces, upper case, look-alikes, NUL, lengths.
		{name: "register: username with a space", r: register(cred("dave smith", pw)), status: 400, code: "invalid_request"},
		{name: "register: username with a leading space", r: register(cred(" dave", pw)), status: 400, code: "invalid_request"},
		{name: "register: username with a tab", r: register(cred("dave\t", pw)), status: 400, code: "invalid_request"},
		{name: "register: upper case of an existing user", r: register(cred(strings.ToUpper(alice.Username), pw)), status: 409, code: "username_taken"},
		{name: "register: Cyrillic а look-alike", r: register(cred("\u0430lice", pw)), status: 400, code: "invalid_request"},
		{name: "register: Kelvin sign look-alike", r: register(cred("\u212Aate", pw)), status: 400, code: "invalid_request"},
		{name: "register: dotted capital I", r: register(cred("\u0130van", pw)), status: 400, code: "invalid_request"},
		{name: "register: full-width letters", r: register(cred("\uff44\uff41\uff56\uff45", pw)), status: 400, code: "invalid_request"},
		{name: "register: zero-width space", r: register(cred("dave\u200b", pw)), status: 400, code: "invalid_request"},
		{name: "register: NUL", r: register(cred("da\x00ve", pw)), status: 400, code: "invalid_request"},
		{name: "register: 2 characters", r: register(cred("da", pw)), status: 400, code: "invalid_request"},
		{name: "register: 33 characters", r: register(cred(strings.Repeat("d", 33), pw)), status: 400, code: "invalid_request"},
		{name: "register: empty username", r: register(cred("", pw)), status: 400, code: "invalid_request"},
		{name: "register: HTML as username", r: register(cred("<script>", pw)), status: 400, code: "invalid_request"},
		{name: "register: SQL as username", r: register(cred(`x'); DROP TABLE users;--`, pw)), status: 400, code: "invalid_request"},
		{name: "login: Cyrillic look-alike of a user", r: login(cred("\u0430"+alice.Username[1:], pw)), status: 401, code: "invalid_credentials"},
		{name: "login: a user's name plus NUL", r: login(cred(alice.Username+"\x00", pw)), status: 401, code: "invalid_credentials"},
		{name: "login: a user's name plus a space", r: login(cred(alice.Username+" ", pw)), status: 401, code: "invalid_credentials"},
		{name: "login: SQL always-true", r: login(cred(`' OR '1'='1`, `' OR '1'='1`)), status: 401, code: "invalid_credentials"},
		{name: "login: SQL comment after a user's name", r: login(cred(alice.Username+`'--`, "whatever")), status: 401, code: "invalid_credentials"},
		{name: "create thread: a look-alike member is unknown", r: as(alice, "POST", "/threads", map[string]any{"name": "x", "members": []string{"\u0430" + bob.Username[1:]}}), status: 400, code: "unknown_user",
			check: wantDetails([]string{"\u0430" + bob.Username[1:]})},
		{name: "add member: name with NUL is unknown", r: as(alice, "POST", "/threads/"+T+"/members", map[string]string{"username": carol.Username + "\x00"}), status: 400, code: "unknown_user",
			check: wantDetails([]string{carol.Username + "\x00"})},
		{name: "add member: SQL is unknown, echoed verbatim", r: as(alice, "POST", "/threads/"+T+"/members", map[string]string{"username": `x'); DROP TABLE thread_members;--`}), status: 400, code: "unknown_user",
			check: wantDetails([]string{`x'); DROP TABLE thread_members;--`})},

		// Passwords: 7 and 73 bytes (8 and 72 are in TestLimits).
		{name: "register: password of 7 bytes", r: register(cred("dave_1", "1234567")), status: 400, code: "invalid_request"},
		{name: "register: password of 73 bytes", r: register(cred("dave_1", strings.Repeat("p", 73))), status: 400, code: "invalid_request"},
		{name: "register: password of 74 bytes in 37 characters", r: register(cred("dave_1", strings.Repeat("é", 37))), status: 400, code: "invalid_request"},
		{name: "register: password of 4 characters in 7 bytes", r: register(cred("dave_1", "éééa")), status: 400, code: "invalid_request"},
		{name: "login: password of 73 bytes", r: login(cred(alice.Username, strings.Repeat("p", 73))), status: 400, code: "invalid_request"},
		{name: "login: a user's password plus one byte (73 bytes, not cut)", r: login(cred(alice.Username, pw+strings.Repeat("x", 73-len(pw)))), status: 400, code: "invalid_request"},

		// Other fields out of their contract.
		{name: "create thread: empty name", r: as(alice, "POST", "/threads", `{"name":"","members":[]}`), status: 400, code: "invalid_request"},
		{name: "create thread: blank name", r: as(alice, "POST", "/threads", `{"name":" \t\n","members":[]}`), status: 400, code: "invalid_request"},
		{name: "create thread: name of 201 bytes", r: as(alice, "POST", "/threads", map[string]any{"name": strings.Repeat("n", 201)}), status: 400, code: "invalid_request"},
		{name: "create thread: name with NUL", r: as(alice, "POST", "/threads", map[string]any{"name": "a\x00b"}), status: 400, code: "invalid_request"},
		{name: "create thread: name with invalid UTF-8", r: as(alice, "POST", "/threads", "{\"name\":\"a\xffb\",\"members\":[]}"), status: 400, code: "invalid_request"},
		{name: "send: empty body", r: as(bob, "POST", "/threads/"+T+"/messages", `{"client_msg_id":"t8","body":""}`), status: 400, code: "invalid_request"},
		{name: "send: body NUL", r: as(bob, "POST", "/threads/"+T+"/messages", `{"client_msg_id":"t8","body":"a\u0000b"}`), status: 400, code: "invalid_request"},
		{name: "send: body with invalid UTF-8", r: as(bob, "POST", "/threads/"+T+"/messages", "{\"client_msg_id\":\"t8\",\"body\":\"a\xc3\x28b\"}"), status: 400, code: "invalid_request"},
		{name: "send: client_msg_id empty", r: as(bob, "POST", "/threads/"+T+"/messages", `{"client_msg_id":"","body":"hi"}`), status: 400, code: "invalid_request"},
		{name: "send: client_msg_id missing", r: as(bob, "POST", "/threads/"+T+"/messages", `{"body":"hi"}`), status: 400, code: "invalid_request"},
		{name: "send: client_msg_id of 65 characters", r: as(bob, "POST", "/threads/"+T+"/messages", map[string]string{"client_msg_id": strings.Repeat("c", 65), "body": "hi"}), status: 400, code: "invalid_request"},
		{name: "send: client_msg_id not ASCII", r: as(bob, "POST", "/threads/"+T+"/messages", map[string]string{"client_msg_id": "café", "body": "hi"}), status: 400, code: "invalid_request"},
		{name: "send: client_msg_id with a newline", r: as(bob, "POST", "/threads/"+T+"/messages", map[string]string{"client_msg_id": "a\nb", "body": "hi"}), status: 400, code: "invalid_request"},
		{name: "send: client_msg_id with DEL", r: as(bob, "POST", "/threads/"+T+"/messages", map[string]string{"client_msg_id": "a\x7fb", "body": "hi"}), status: 400, code: "invalid_request"},

		// Credentials that are not credentials.
		{name: "GET /me: Bearer of garbage", r: req{Method: "GET", Path: "/api/v1/me", Token: "garbage"}, status: 401, code: "unauthenticated"},
		{name: "GET /me: Bearer of 10,000 characters", r: req{Method: "GET", Path: "/api/v1/me", Token: strings.Repeat("A", 10000)}, status: 401, code: "unauthenticated"},
		{name: "GET /me: Bearer of the session hash", r: req{Method: "GET", Path: "/api/v1/me", Token: chat.HashToken(alice.Token)}, status: 401, code: "unauthenticated"},
		{name: "GET /me: Basic auth", r: req{Method: "GET", Path: "/api/v1/me", Header: http.Header{"Authorization": {"Basic YWxpY2U6cHc="}}}, status: 401, code: "unauthenticated"},
		{name: "GET /me: Bearer with no token", r: req{Method: "GET", Path: "/api/v1/me", Header: http.Header{"Authorization": {"Bearer "}}}, status: 401, code: "unauthenticated"},
		{name: "GET /me: cookie of garbage", r: req{Method: "GET", Path: "/api/v1/me", Cookie: "garbage"}, status: 401, code: "unauthenticated"},
		{name: "GET /me: a token with a trailing byte", r: req{Method: "GET", Path: "/api/v1/me", Token: alice.Token + "x"}, status: 401, code: "unauthenticated"},
	}

	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			before := s.snapshot(t)
			r := h.do(t, tc.r)
			if tc.code != "" {
				hosttest.WantError(t, r, tc.status, tc.code)
			} else {
				hosttest.WantStatus(t, r, tc.status)
			}
			if tc.check != nil {
				if err := tc.check(r); err != nil {
					t.Error(err)
				}
			}
			wantUnchanged(t, before, s.snapshot(t))
		})
	}
	// And the service still answers normally.
	h.send(t, bob, T, "still here")
}

// wantJSON checks that an answer's body is the JSON value want.
func wantJSON(want string) func(reply) error {
	return func(r reply) error {
		var got, exp any
		if err := json.Unmarshal(r.Body, &got); err != nil {
			return err
		}
		_ = json.Unmarshal([]byte(want), &exp)
		gb, _ := json.Marshal(got)
		eb, _ := json.Marshal(exp)
		if string(gb) != string(eb) {
			return fmt.Errorf("body %s, want %s", r.Body, want)
		}
		return nil
	}
}

// wantDetails checks that an unknown_user answer lists exactly usernames, verbatim.
func wantDetails(usernames []string) func(reply) error {
	return func(r reply) error {
		var b struct {
			Error struct {
				Details struct {
					Usernames []string `json:"usernames"`
				} `json:"details"`
			} `json:"error"`
		}
		if err := json.Unmarshal(r.Body, &b); err != nil {
			return err
		}
		if !slices.Equal(b.Error.Details.Usernames, usernames) {
			return fmt.Errorf("details.usernames %q, want %q", b.Error.Details.Usernames, usernames)
		}
		return nil
	}
}
