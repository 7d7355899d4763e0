package securitytest

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/pkg/hosttest"
)

// Who makes a request in the authorization matrix.
const (
	noSession = iota
	otherUser // logged in, not a member of the thread
	member    // a member who did not create the thread
	creator
)

var whoNames = [...]string{"no session", "other user", "member", "creator"}

// TestAuthorizationMatrix calls every route of contract section 2 and sends every client
// frame of section 3 as each of: no session, another user (not a member), a member and
// the thread's creator, each cell on a thread of its own, and checks the answer of every
// cell; every refused cell also leaves PostgreSQL and Redis unchanged.
func TestAuthorizationMatrix(t *testing.T) {
	t.Parallel()
	// Every cell's thread gets a message from its creator: more than the send burst.
	s := newStack(t, 1, map[string]string{"CHAT_LIMIT_SEND_BURST": "100000"})
	h := s.h()
	users := [4]user{{}, h.newUser(t, "other"), h.newUser(t, "member"), h.newUser(t, "creator")}
	victim := h.newUser(t, "victim")

	// cell is one cell's thread: created by creator with member and victim, one
	// message; and a joiner, a user in no thread, for adding.
	type cell struct {
		T      apiThread
		who    int
		u      user // the caller (zero for no session)
		joiner apiUser
	}
	newCell := func(t *testing.T, who int) cell {
		th := h.newThread(t, users[creator], "matrix", users[member], victim)
		h.send(t, users[creator], th.ID, "hello")
		return cell{T: th, who: who, u: users[who], joiner: h.register(t, s.name("joiner"))}
	}
	call := func(c cell, method, path string, body any) reply {
		return h.do(t, req{Method: method, Path: path, Body: body, Token: c.u.Token})
	}

	// listed reports whether the answer of GET /threads lists thread id.
	listed := func(r reply, id string) bool {
		var out struct {
			Threads []apiThread `json:"threads"`
		}
		r.Decode(t, &out)
		return slices.ContainsFunc(out.Threads, func(x apiThread) bool { return x.ID == id })
	}
	routes := []struct {
		name string
		do   func(c cell) reply
		want [4]int
		// check looks further at a successful answer.
		check func(t *testing.T, c cell, r reply)
	}{
		{"POST /auth/register", func(c cell) reply {
			return call(c, "POST", "/api/v1/auth/register", credentials(s.name("reg"), testPassword))
		}, [4]int{201, 201, 201, 201}, nil},
		{"POST /auth/login", func(c cell) reply {
			return call(c, "POST", "/api/v1/auth/login", credentials(victim.Username, testPassword))
		}, [4]int{200, 200, 200, 200}, nil},
		{"POST /auth/logout", func(c cell) reply {
			if c.who != noSession {
				c.u = h.session(t, c.u) // a session of its own: the others stay valid
			}
			return call(c, "POST", "/api/v1/auth/logout", nil)
		}, [4]int{401, 204, 204, 204}, nil},
		{"GET /me", func(c cell) reply { return call(c, "GET", "/api/v1/me", nil) }, [4]int{401, 200, 200, 200},
			func(t *testing.T, c cell, r reply) {
				var out struct {
					User apiUser `json:"user"`
				}
				r.Decode(t, &out)
				if out.User.ID != c.u.ID {
					t.Errorf("GET /me answered %v, want %s", out.User, c.u.Username)
				}
			}},
		{"POST /threads", func(c cell) reply {
			return call(c, "POST", "/api/v1/threads", map[string]any{"name": "own", "members": []string{}})
		}, [4]int{401, 201, 201, 201}, nil},
		{"GET /threads", func(c cell) reply { return call(c, "GET", "/api/v1/threads", nil) }, [4]int{401, 200, 200, 200},
			func(t *testing.T, c cell, r reply) {
				if got, want := listed(r, c.T.ID), c.who != otherUser; got != want {
					t.Errorf("the cell's thread listed: %v, want %v", got, want)
				}
			}},
		{"GET /threads/{id}", func(c cell) reply { return call(c, "GET", "/api/v1/threads/"+c.T.ID, nil) }, [4]int{401, 404, 200, 200}, nil},
		{"POST /threads/{id}/members", func(c cell) reply {
			return call(c, "POST", "/api/v1/threads/"+c.T.ID+"/members", map[string]string{"username": c.joiner.Username})
		}, [4]int{401, 404, 403, 200}, nil},
		{"DELETE /threads/{id}/members/{another}", func(c cell) reply {
			return call(c, "DELETE", "/api/v1/threads/"+c.T.ID+"/members/"+victim.ID, nil)
		}, [4]int{401, 404, 403, 204}, nil},
		{"DELETE /threads/{id}/members/{self}", func(c cell) reply {
			self := c.u.ID
			if c.who == noSession {
				self = victim.ID // no session has no self: any member's id
			}
			return call(c, "DELETE", "/api/v1/threads/"+c.T.ID+"/members/"+self, nil)
		}, [4]int{401, 404, 204, 204}, nil},
		{"GET /threads/{id}/messages", func(c cell) reply { return call(c, "GET", "/api/v1/threads/"+c.T.ID+"/messages", nil) }, [4]int{401, 404, 200, 200},
			func(t *testing.T, c cell, r reply) {
				var out struct {
					Messages []apiMessage `json:"messages"`
				}
				r.Decode(t, &out)
				if len(out.Messages) != 1 || out.Messages[0].Body != "hello" {
					t.Errorf("history %+v, want the one message", out.Messages)
				}
			}},
		{"POST /threads/{id}/messages", func(c cell) reply {
			return call(c, "POST", "/api/v1/threads/"+c.T.ID+"/messages", map[string]string{"client_msg_id": "mx-" + hosttest.RandomHex(4), "body": "hi"})
		}, [4]int{401, 404, 201, 201}, nil},
		{"POST /threads/{id}/read", func(c cell) reply {
			return call(c, "POST", "/api/v1/threads/"+c.T.ID+"/read", map[string]int{"seq": 1})
		}, [4]int{401, 404, 204, 204}, nil},
		{"GET /presence", func(c cell) reply {
			return call(c, "GET", "/api/v1/presence?user_id="+users[creator].ID+"&user_id="+users[member].ID+"&user_id="+victim.ID, nil)
		}, [4]int{401, 200, 200, 200},
			func(t *testing.T, c cell, r reply) {
				var out struct {
					Presence []struct {
						UserID string `json:"user_id"`
					} `json:"presence"`
				}
				r.Decode(t, &out)
				want := 3 // creator, member and victim share the cell's thread with the caller
				if c.who == otherUser {
					want = 0 // who shares no thread with them learns nothing
				}
				if len(out.Presence) != want {
					t.Errorf("presence %+v, want %d entries", out.Presence, want)
				}
			}},
		{"GET /healthz", func(c cell) reply { return call(c, "GET", "/healthz", nil) }, [4]int{200, 200, 200, 200}, nil},
		{"GET /readyz", func(c cell) reply { return call(c, "GET", "/readyz", nil) }, [4]int{200, 200, 200, 200}, nil},
		{"GET /metrics", func(c cell) reply { return call(c, "GET", "/metrics", nil) }, [4]int{200, 200, 200, 200}, nil},
		{"GET /ws (upgrade)", func(c cell) reply {
			conn, r, err := h.tryDial(c.u.Token, dialOpts{})
			if err == nil {
				_ = conn.Close()
				r.Status = http.StatusSwitchingProtocols
			}
			return r
		}, [4]int{401, 101, 101, 101}, nil},
	}

	for _, rt := range routes {
		for who := noSession; who <= creator; who++ {
			t.Run(fmt.Sprintf("%s as %s", rt.name, whoNames[who]), func(t *testing.T) {
				c := newCell(t, who)
				before := s.snapshot(t)
				r := rt.do(c)
				want := rt.want[who]
				if want >= 400 {
					code := map[int]string{401: "unauthenticated", 403: "forbidden", 404: "not_found"}[want]
					hosttest.WantError(t, r, want, code)
					wantUnchanged(t, before, s.snapshot(t))
					return
				}
				hosttest.WantStatus(t, r, want)
				if rt.check != nil {
					rt.check(t, c, r)
				}
			})
		}
	}

	// Frames: a socket needs a session (the /ws row), so the frame rows start at
	// otherUser. want is the frame answering, "" for none.
	frames := []struct {
		name  string
		frame func(c cell) (f any, ref string) // ref: what an error frame echoes
		want  [4]string
	}{
		{"send", func(c cell) (any, string) {
			id := "fx-" + hosttest.RandomHex(4)
			return map[string]string{"type": "send", "thread_id": c.T.ID, "client_msg_id": id, "body": "hi"}, id
		}, [4]string{"", "error not_member", "sent", "sent"}},
		{"ack", func(c cell) (any, string) { return map[string]any{"type": "ack", "thread_id": c.T.ID, "seq": 1}, "" },
			[4]string{"", "error not_member", "", ""}},
		{"sync", func(c cell) (any, string) {
			return map[string]any{"type": "sync", "id": "s1", "thread_id": c.T.ID}, "s1"
		},
			[4]string{"", "error not_member", "sync_result", "sync_result"}},
		{"typing", func(c cell) (any, string) { return map[string]any{"type": "typing", "thread_id": c.T.ID}, "" },
			[4]string{"", "error not_member", "", ""}},
		{"ping", func(c cell) (any, string) { return map[string]any{"type": "ping"}, "" },
			[4]string{"", "pong", "pong", "pong"}},
	}
	for _, fr := range frames {
		for who := otherUser; who <= creator; who++ {
			t.Run(fmt.Sprintf("frame %s as %s", fr.name, whoNames[who]), func(t *testing.T) {
				c := newCell(t, who)
				w := h.dial(t, c.u)
				before := s.snapshot(t)
				f, ref := fr.frame(c)
				w.write(t, f)
				got := w.roundTrip(t)
				if fr.name == "ping" { // the frame's own pong ended the round trip
					if len(got) != 0 {
						t.Errorf("frames %v before pong", got)
					}
					w.until(t, "pong")
					return
				}
				switch want := fr.want[who]; want {
				case "":
					if len(got) != 0 {
						t.Errorf("answer %v, want none", got)
					}
					if fr.name == "ack" {
						// An accepted ack is written to PostgreSQL within the ack flush
						// interval: let it land here, not in a later row's
						// nothing-changed check.
						deadline := time.Now().Add(2 * time.Second)
						for len(s.snapshot(t).diff(before)) == 0 && time.Now().Before(deadline) {
							time.Sleep(20 * time.Millisecond)
						}
					}
				case "error not_member":
					if len(got) != 1 {
						t.Fatalf("answer %v, want an error frame", got)
					}
					if err := checkErrorFrame(got[0], "not_member", ref); err != nil {
						t.Error(err)
					}
					wantUnchanged(t, before, s.snapshot(t))
				default:
					if len(got) != 1 || got[0].typ() != want {
						t.Errorf("answer %v, want %s", got, want)
					}
				}
			})
		}
	}
}
