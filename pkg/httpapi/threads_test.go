package httpapi_test

import (
	"bytes"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/switchboard-chat/switchboard/pkg/hosttest"
)

func memberIDs(t apiThread) []string {
	out := []string{}
	for _, m := range t.Members {
		out = append(out, m.ID)
	}
	sort.Strings(out)
	return out
}

func ids(us ...testUser) []string {
	out := []string{}
	for _, u := range us {
		out = append(out, u.ID)
	}
	sort.Strings(out)
	return out
}

func TestCreateThread(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)

	t.Run("creator is a member; names are folded and counted once", func(t *testing.T) {
		t.Parallel()
		alice, bob, carol := s.newUser(t, "alice"), s.newUser(t, "bob"), s.newUser(t, "carol")
		r := s.Do(t, call{Method: "POST", Path: "/api/v1/threads", Token: alice.Token, Body: map[string]any{
			"name": "Plans 🚀", "members": []string{strings.ToUpper(bob.Username), bob.Username, carol.Username, alice.Username},
		}})
		hosttest.WantStatus(t, r, http.StatusCreated)
		var raw map[string]map[string]any
		r.Decode(t, &raw)
		for _, k := range []string{"id", "name", "created_by", "members", "last_seq", "unread", "created_at"} {
			if _, ok := raw["thread"][k]; !ok {
				t.Errorf("thread %s has no %s", r.Body, k)
			}
		}
		var out struct{ Thread apiThread }
		r.Decode(t, &out)
		th := out.Thread
		if th.Name != "Plans 🚀" || th.CreatedBy != alice.ID || th.LastSeq != 0 || th.Unread != 0 || th.ID == "" {
			t.Errorf("thread %+v", th)
		}
		wantUTC(t, "created_at", th.CreatedAt)
		if got, want := memberIDs(th), ids(alice, bob, carol); !slices.Equal(got, want) {
			t.Errorf("members %v, want %v", got, want)
		}
		for _, m := range th.Members {
			if m.Username == "" {
				t.Errorf("member %+v has no username", m)
			}
		}
		// Every member sees it.
		for _, u := range []testUser{alice, bob, carol} {
			if got := s.thread(t, u, th.ID); got.ID != th.ID {
				t.Errorf("%s cannot see the thread", u.Username)
			}
		}
	})

	t.Run("with no members, only the creator", func(t *testing.T) {
		t.Parallel()
		alice := s.newUser(t, "solo")
		for _, body := range []string{`{"name":"me"}`, `{"name":"me","members":[]}`, `{"name":"me","members":null}`} {
			r := s.Do(t, call{Method: "POST", Path: "/api/v1/threads", Token: alice.Token, Body: body})
			hosttest.WantStatus(t, r, http.StatusCreated)
			var out struct{ Thread apiThread }
			r.Decode(t, &out)
			if got := memberIDs(out.Thread); !slices.Equal(got, ids(alice)) {
				t.Errorf("%s: members %v, want only the creator", body, got)
			}
		}
	})

	t.Run("unknown_user lists every unknown name and creates nothing", func(t *testing.T) {
		t.Parallel()
		alice, bob := s.newUser(t, "alice"), s.newUser(t, "bob")
		ghost1, ghost2 := s.name("ghost"), s.name("ghost")
		r := s.Do(t, call{Method: "POST", Path: "/api/v1/threads", Token: alice.Token, Body: map[string]any{
			"name": "x", "members": []string{ghost1, bob.Username, strings.ToUpper(ghost2)},
		}})
		e := hosttest.WantError(t, r, http.StatusBadRequest, "unknown_user")
		got := detailNames(t, e)
		// detailNames sorts, as strings: ghost_10 comes before ghost_9.
		want := []string{ghost1, ghost2}
		sort.Strings(want)
		if !slices.Equal(got, want) {
			t.Errorf("details.usernames %v, want %v", got, want)
		}
		if ts := s.listThreads(t, alice); len(ts) != 0 {
			t.Errorf("a thread was created: %+v", ts)
		}
	})

	bad := []struct{ name, body string }{
		{"empty name", `{"name":"","members":[]}`},
		{"blank name", `{"name":"   ","members":[]}`},
		{"missing name", `{"members":[]}`},
		{"name over 200 bytes", `{"name":"` + strings.Repeat("n", 201) + `","members":[]}`},
		{"name with NUL", `{"name":"a\u0000b","members":[]}`},
		{"members not a list", `{"name":"x","members":"bob"}`},
		{"member not a string", `{"name":"x","members":[1]}`},
		{"name not a string", `{"name":5}`},
	}
	for _, tc := range bad {
		t.Run("400 for "+tc.name, func(t *testing.T) {
			t.Parallel()
			u := s.newUser(t, "bad")
			r := s.Do(t, call{Method: "POST", Path: "/api/v1/threads", Token: u.Token, Body: tc.body})
			hosttest.WantError(t, r, http.StatusBadRequest, "invalid_request")
		})
	}
}

func detailNames(t *testing.T, e apiError) []string {
	t.Helper()
	raw, ok := e.Details["usernames"].([]any)
	if !ok || len(e.Details) != 1 {
		t.Fatalf("details %v: want {usernames: [...]}", e.Details)
	}
	out := []string{}
	for _, v := range raw {
		s, _ := v.(string)
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

func TestListThreads(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)

	t.Run("newest activity first, only your threads", func(t *testing.T) {
		t.Parallel()
		alice, bob, eve := s.newUser(t, "alice"), s.newUser(t, "bob"), s.newUser(t, "eve")
		if ts := s.listThreads(t, alice); len(ts) != 0 {
			t.Fatalf("a new user has threads %+v", ts)
		}
		t1 := s.newThread(t, alice, "one", bob)
		t2 := s.newThread(t, alice, "two")
		t3 := s.newThread(t, bob, "three", alice)
		s.newThread(t, eve, "eve's")
		if got, want := threadIDs(s.listThreads(t, alice)), []string{t3.ID, t2.ID, t1.ID}; !slices.Equal(got, want) {
			t.Fatalf("order %v, want newest first %v", got, want)
		}
		s.send(t, bob, t1.ID, "bump")
		if got, want := threadIDs(s.listThreads(t, alice)), []string{t1.ID, t3.ID, t2.ID}; !slices.Equal(got, want) {
			t.Fatalf("after a message in one: %v, want %v", got, want)
		}
		if got, want := threadIDs(s.listThreads(t, bob)), []string{t1.ID, t3.ID}; !slices.Equal(got, want) {
			t.Fatalf("bob sees %v, want %v", got, want)
		}
	})

	t.Run("unread counts messages after your read mark that others sent", func(t *testing.T) {
		t.Parallel()
		alice, bob, carol := s.newUser(t, "alice"), s.newUser(t, "bob"), s.newUser(t, "carol")
		th := s.newThread(t, alice, "unread", bob, carol)
		s.send(t, bob, th.ID, "1")
		s.send(t, carol, th.ID, "2")
		s.send(t, bob, th.ID, "3")
		unread := func(u testUser) int64 {
			t.Helper()
			for _, x := range s.listThreads(t, u) {
				if x.ID == th.ID {
					if x.LastSeq != 3 {
						t.Errorf("last_seq %d, want 3", x.LastSeq)
					}
					if g := s.thread(t, u, th.ID); g.Unread != x.Unread {
						t.Errorf("GET /threads/{id} unread %d, list says %d", g.Unread, x.Unread)
					}
					return x.Unread
				}
			}
			t.Fatalf("%s does not see the thread", u.Username)
			return 0
		}
		if n := unread(alice); n != 3 {
			t.Errorf("alice unread %d, want 3", n)
		}
		if n := unread(bob); n != 1 {
			t.Errorf("bob unread %d, want 1 (carol's; his own messages do not count)", n)
		}
		// Sending is not reading: bob's message before carol's own is still unread.
		if n := unread(carol); n != 2 {
			t.Errorf("carol unread %d, want 2 (both of bob's messages)", n)
		}

		r := s.Do(t, call{Method: "POST", Path: "/api/v1/threads/" + th.ID + "/read", Token: alice.Token, Body: `{"seq":2}`})
		hosttest.WantStatus(t, r, http.StatusNoContent)
		if len(r.Body) != 0 {
			t.Errorf("204 with a body %q", r.Body)
		}
		if n := unread(alice); n != 1 {
			t.Errorf("after read 2: alice unread %d, want 1", n)
		}
		// The mark never moves back.
		hosttest.WantStatus(t, s.Do(t, call{Method: "POST", Path: "/api/v1/threads/" + th.ID + "/read", Token: alice.Token, Body: `{"seq":1}`}), http.StatusNoContent)
		if n := unread(alice); n != 1 {
			t.Errorf("after read 1: alice unread %d, want still 1", n)
		}
		hosttest.WantStatus(t, s.Do(t, call{Method: "POST", Path: "/api/v1/threads/" + th.ID + "/read", Token: alice.Token, Body: `{"seq":3}`}), http.StatusNoContent)
		if n := unread(alice); n != 0 {
			t.Errorf("after read 3: alice unread %d, want 0", n)
		}
	})

	t.Run("a member added later has no unread history", func(t *testing.T) {
		t.Parallel()
		alice, bob := s.newUser(t, "alice"), s.newUser(t, "bob")
		th := s.newThread(t, alice, "late")
		s.send(t, alice, th.ID, "before bob")
		r := s.Do(t, call{Method: "POST", Path: "/api/v1/threads/" + th.ID + "/members", Token: alice.Token, Body: map[string]string{"username": bob.Username}})
		hosttest.WantStatus(t, r, http.StatusOK)
		if g := s.thread(t, bob, th.ID); g.Unread != 0 || g.LastSeq != 1 {
			t.Errorf("bob sees unread %d last_seq %d, want 0 and 1", g.Unread, g.LastSeq)
		}
		s.send(t, alice, th.ID, "after bob")
		if g := s.thread(t, bob, th.ID); g.Unread != 1 {
			t.Errorf("bob unread %d, want 1", g.Unread)
		}
	})
}

func TestReadMark(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, bob, eve := s.newUser(t, "alice"), s.newUser(t, "bob"), s.newUser(t, "eve")
	th := s.newThread(t, alice, "read", bob)
	s.send(t, bob, th.ID, "one")
	s.send(t, bob, th.ID, "two")

	cases := []struct {
		name   string
		user   testUser
		thread string
		body   string
		status int
		code   string
	}{
		{"seq 0", alice, th.ID, `{"seq":0}`, http.StatusNoContent, ""},
		{"seq at the end", bob, th.ID, `{"seq":2}`, http.StatusNoContent, ""},
		{"unknown fields ignored", alice, th.ID, `{"seq":1,"extra":{"a":[1]}}`, http.StatusNoContent, ""},
		{"non-member", eve, th.ID, `{"seq":1}`, http.StatusNotFound, "not_found"},
		{"unknown thread", alice, "01890000-0000-7000-8000-000000000000", `{"seq":1}`, http.StatusNotFound, "not_found"},
		{"malformed thread id", alice, "not-an-id", `{"seq":1}`, http.StatusNotFound, "not_found"},
		{"missing seq", alice, th.ID, `{}`, http.StatusBadRequest, "invalid_request"},
		{"negative seq", alice, th.ID, `{"seq":-1}`, http.StatusBadRequest, "invalid_request"},
		{"seq past the end", alice, th.ID, `{"seq":3}`, http.StatusBadRequest, "invalid_request"},
		{"seq a string", alice, th.ID, `{"seq":"1"}`, http.StatusBadRequest, "invalid_request"},
		{"seq a fraction", alice, th.ID, `{"seq":1.5}`, http.StatusBadRequest, "invalid_request"},
		{"seq beyond int64", alice, th.ID, `{"seq":99999999999999999999}`, http.StatusBadRequest, "invalid_request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := s.Do(t, call{Method: "POST", Path: "/api/v1/threads/" + tc.thread + "/read", Token: tc.user.Token, Body: tc.body})
			if tc.code == "" {
				hosttest.WantStatus(t, r, tc.status)
				return
			}
			hosttest.WantError(t, r, tc.status, tc.code)
		})
	}
}

func TestGetThread(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	alice, bob, eve := s.newUser(t, "alice"), s.newUser(t, "bob"), s.newUser(t, "eve")
	th := s.newThread(t, alice, "secret", bob)

	t.Run("a member gets it", func(t *testing.T) {
		t.Parallel()
		got := s.thread(t, bob, th.ID)
		if got.ID != th.ID || got.Name != "secret" || got.CreatedBy != alice.ID || !slices.Equal(memberIDs(got), ids(alice, bob)) {
			t.Errorf("thread %+v", got)
		}
	})

	t.Run("a non-member learns nothing", func(t *testing.T) {
		t.Parallel()
		member := s.Do(t, call{Method: "GET", Path: "/api/v1/threads/" + th.ID, Token: eve.Token})
		none := s.Do(t, call{Method: "GET", Path: "/api/v1/threads/01890000-0000-7000-8000-000000000000", Token: eve.Token})
		hosttest.WantError(t, member, http.StatusNotFound, "not_found")
		hosttest.WantError(t, none, http.StatusNotFound, "not_found")
		if !bytes.Equal(member.Body, none.Body) {
			t.Errorf("an existing thread answers %s, a missing one %s: want identical", member.Body, none.Body)
		}
	})

	for _, id := range []string{
		"abc",
		"0",
		strings.ToUpper(th.ID),
		th.ID + "0",
		th.ID[:35],
		strings.Replace(th.ID, "-", "x", 1),
		"%27%20OR%201=1--",
		"..%2f..%2fetc",
		strings.Repeat("f", 36),
	} {
		t.Run("malformed id "+id, func(t *testing.T) {
			t.Parallel()
			r := s.Do(t, call{Method: "GET", Path: "/api/v1/threads/" + id, Token: alice.Token})
			hosttest.WantError(t, r, http.StatusNotFound, "not_found")
		})
	}
}

func TestMembers(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)

	// setup makes a thread of creator with member; outsider is in no thread.
	setup := func(t *testing.T) (creator, member, outsider testUser, th apiThread) {
		creator, member, outsider = s.newUser(t, "creator"), s.newUser(t, "member"), s.newUser(t, "outsider")
		th = s.newThread(t, creator, "members", member)
		return
	}
	addPath := func(th apiThread) string { return "/api/v1/threads/" + th.ID + "/members" }
	delPath := func(th apiThread, userID string) string { return "/api/v1/threads/" + th.ID + "/members/" + userID }

	t.Run("creator adds a member, twice is harmless", func(t *testing.T) {
		t.Parallel()
		creator, member, outsider, th := setup(t)
		for i := 0; i < 2; i++ {
			r := s.Do(t, call{Method: "POST", Path: addPath(th), Token: creator.Token, Body: map[string]string{"username": strings.ToUpper(outsider.Username)}})
			hosttest.WantStatus(t, r, http.StatusOK)
			var out struct{ Thread apiThread }
			r.Decode(t, &out)
			if got, want := memberIDs(out.Thread), ids(creator, member, outsider); !slices.Equal(got, want) {
				t.Fatalf("members %v, want %v", got, want)
			}
		}
		s.thread(t, outsider, th.ID) // and now sees it
	})

	t.Run("another member may not add: 403", func(t *testing.T) {
		t.Parallel()
		_, member, outsider, th := setup(t)
		r := s.Do(t, call{Method: "POST", Path: addPath(th), Token: member.Token, Body: map[string]string{"username": outsider.Username}})
		hosttest.WantError(t, r, http.StatusForbidden, "forbidden")
		hosttest.WantError(t, s.Do(t, call{Method: "GET", Path: "/api/v1/threads/" + th.ID, Token: outsider.Token}), http.StatusNotFound, "not_found")
	})

	t.Run("a non-member may not add: 404", func(t *testing.T) {
		t.Parallel()
		_, _, outsider, th := setup(t)
		r := s.Do(t, call{Method: "POST", Path: addPath(th), Token: outsider.Token, Body: map[string]string{"username": outsider.Username}})
		hosttest.WantError(t, r, http.StatusNotFound, "not_found")
	})

	t.Run("unknown user: 400 unknown_user", func(t *testing.T) {
		t.Parallel()
		creator, _, _, th := setup(t)
		ghost := s.name("ghost")
		r := s.Do(t, call{Method: "POST", Path: addPath(th), Token: creator.Token, Body: map[string]string{"username": ghost}})
		e := hosttest.WantError(t, r, http.StatusBadRequest, "unknown_user")
		if got := detailNames(t, e); !slices.Equal(got, []string{ghost}) {
			t.Errorf("details.usernames %v, want [%s]", got, ghost)
		}
	})

	t.Run("add to a missing or malformed thread: 404", func(t *testing.T) {
		t.Parallel()
		creator, member, _, _ := setup(t)
		for _, id := range []string{"01890000-0000-7000-8000-000000000000", "nope"} {
			r := s.Do(t, call{Method: "POST", Path: "/api/v1/threads/" + id + "/members", Token: creator.Token, Body: map[string]string{"username": member.Username}})
			hosttest.WantError(t, r, http.StatusNotFound, "not_found")
		}
	})

	t.Run("username of the wrong type: 400", func(t *testing.T) {
		t.Parallel()
		creator, _, _, th := setup(t)
		r := s.Do(t, call{Method: "POST", Path: addPath(th), Token: creator.Token, Body: `{"username":["a"]}`})
		hosttest.WantError(t, r, http.StatusBadRequest, "invalid_request")
	})

	t.Run("a member leaves: 204, then 404", func(t *testing.T) {
		t.Parallel()
		creator, member, _, th := setup(t)
		r := s.Do(t, call{Method: "DELETE", Path: delPath(th, member.ID), Token: member.Token})
		hosttest.WantStatus(t, r, http.StatusNoContent)
		hosttest.WantError(t, s.Do(t, call{Method: "GET", Path: "/api/v1/threads/" + th.ID, Token: member.Token}), http.StatusNotFound, "not_found")
		if got := memberIDs(s.thread(t, creator, th.ID)); !slices.Equal(got, ids(creator)) {
			t.Errorf("members %v after leaving, want only the creator", got)
		}
		// Gone means gone: leaving again, sending, reading are all 404.
		hosttest.WantError(t, s.Do(t, call{Method: "DELETE", Path: delPath(th, member.ID), Token: member.Token}), http.StatusNotFound, "not_found")
		r = s.Do(t, call{Method: "POST", Path: "/api/v1/threads/" + th.ID + "/messages", Token: member.Token, Body: map[string]string{"client_msg_id": "x", "body": "hi"}})
		hosttest.WantError(t, r, http.StatusNotFound, "not_found")
		hosttest.WantError(t, s.Do(t, call{Method: "GET", Path: "/api/v1/threads/" + th.ID + "/messages", Token: member.Token}), http.StatusNotFound, "not_found")
	})

	t.Run("the creator removes a member: 204", func(t *testing.T) {
		t.Parallel()
		creator, member, _, th := setup(t)
		hosttest.WantStatus(t, s.Do(t, call{Method: "DELETE", Path: delPath(th, member.ID), Token: creator.Token}), http.StatusNoContent)
		hosttest.WantError(t, s.Do(t, call{Method: "GET", Path: "/api/v1/threads/" + th.ID, Token: member.Token}), http.StatusNotFound, "not_found")
	})

	t.Run("a member removing someone else: 403", func(t *testing.T) {
		t.Parallel()
		creator, member, outsider, th := setup(t)
		hosttest.WantStatus(t, s.Do(t, call{Method: "POST", Path: addPath(th), Token: creator.Token, Body: map[string]string{"username": outsider.Username}}), http.StatusOK)
		for _, victim := range []testUser{creator, outsider} {
			hosttest.WantError(t, s.Do(t, call{Method: "DELETE", Path: delPath(th, victim.ID), Token: member.Token}), http.StatusForbidden, "forbidden")
		}
		if got := memberIDs(s.thread(t, creator, th.ID)); !slices.Equal(got, ids(creator, member, outsider)) {
			t.Errorf("members %v, want all three", got)
		}
	})

	t.Run("a non-member removing: 404", func(t *testing.T) {
		t.Parallel()
		_, member, outsider, th := setup(t)
		hosttest.WantError(t, s.Do(t, call{Method: "DELETE", Path: delPath(th, member.ID), Token: outsider.Token}), http.StatusNotFound, "not_found")
		hosttest.WantError(t, s.Do(t, call{Method: "DELETE", Path: delPath(th, outsider.ID), Token: outsider.Token}), http.StatusNotFound, "not_found")
	})

	t.Run("removing someone who is not a member: 404", func(t *testing.T) {
		t.Parallel()
		creator, _, outsider, th := setup(t)
		for _, id := range []string{outsider.ID, "01890000-0000-7000-8000-000000000000", "garbage"} {
			hosttest.WantError(t, s.Do(t, call{Method: "DELETE", Path: delPath(th, id), Token: creator.Token}), http.StatusNotFound, "not_found")
		}
	})
}

// TestThreadMemberLimit: a thread never passes CHAT_LIMIT_THREAD_MEMBERS (400).
func TestThreadMemberLimit(t *testing.T) {
	t.Parallel()
	s := newServer(t, map[string]string{"CHAT_LIMIT_THREAD_MEMBERS": "3"})
	a, b, c, d := s.newUser(t, "a"), s.newUser(t, "b"), s.newUser(t, "c"), s.newUser(t, "d")
	r := s.Do(t, call{Method: "POST", Path: "/api/v1/threads", Token: a.Token, Body: map[string]any{"name": "big", "members": []string{b.Username, c.Username, d.Username}}})
	hosttest.WantError(t, r, http.StatusBadRequest, "invalid_request")
	th := s.newThread(t, a, "full", b, c)
	r = s.Do(t, call{Method: "POST", Path: "/api/v1/threads/" + th.ID + "/members", Token: a.Token, Body: map[string]string{"username": d.Username}})
	hosttest.WantError(t, r, http.StatusBadRequest, "invalid_request")
	if got := memberIDs(s.thread(t, a, th.ID)); !slices.Equal(got, ids(a, b, c)) {
		t.Errorf("members %v, want a, b, c", got)
	}
}
