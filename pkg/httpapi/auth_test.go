package httpapi_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/pkg/hosttest"
	"github.com/switchboard-chat/switchboard/pkg/httpapi"
)

func TestRegister(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)

	t.Run("folds upper case and answers 201", func(t *testing.T) {
		t.Parallel()
		r := s.Do(t, call{Method: "POST", Path: "/api/v1/auth/register", Body: map[string]string{"username": "Alice.Smith-01", "password": testPassword}})
		hosttest.WantStatus(t, r, http.StatusCreated)
		var out map[string]apiUser
		r.Decode(t, &out)
		u := out["user"]
		if u.Username != "alice.smith-01" || u.ID == "" || len(out) != 1 {
			t.Fatalf("register answered %s, want {user:{id, username alice.smith-01}}", r.Body)
		}
		// The folded name is the account: logging in with any case works, and
		// registering any case again is taken.
		for _, name := range []string{"alice.smith-01", "ALICE.SMITH-01"} {
			if l := s.login(t, name); l.User != u {
				t.Fatalf("login as %s gave user %+v, want %+v", name, l.User, u)
			}
			r := s.Do(t, call{Method: "POST", Path: "/api/v1/auth/register", Body: map[string]string{"username": name, "password": testPassword}})
			hosttest.WantError(t, r, http.StatusConflict, "username_taken")
		}
	})

	good := []struct{ name, username, password string }{
		{"3 characters", "abc", testPassword},
		{"32 characters", strings.Repeat("b", 32), testPassword},
		{"every allowed character", "a-z_0.9", testPassword},
		{"password of 8 bytes", "pw8", "12345678"},
		{"password of 72 bytes", "pw72", strings.Repeat("p", 72)},
		{"password of 72 bytes in 36 two-byte characters", "pw72u", strings.Repeat("é", 36)},
		{"password with NUL and spaces", "pwnul", "  pass\x00word  "},
	}
	for _, tc := range good {
		t.Run("accepts "+tc.name, func(t *testing.T) {
			t.Parallel()
			r := s.Do(t, call{Method: "POST", Path: "/api/v1/auth/register", Body: map[string]string{"username": tc.username, "password": tc.password}})
			hosttest.WantStatus(t, r, http.StatusCreated)
			r = s.Do(t, call{Method: "POST", Path: "/api/v1/auth/login", Body: map[string]string{"username": tc.username, "password": tc.password}})
			hosttest.WantStatus(t, r, http.StatusOK)
		})
	}

	bad := []struct{ name, username, password string }{
		{"empty username", "", testPassword},
		{"2 characters", "ab", testPassword},
		{"33 characters", strings.Repeat("c", 33), testPassword},
		{"inner space", "bob smith", testPassword},
		{"leading space", " bobby", testPassword},
		{"trailing space", "bobby ", testPassword},
		{"tab", "bob\tby", testPassword},
		{"NUL", "bob\x00by", testPassword},
		{"punctuation", "bob!", testPassword},
		{"at sign", "bob@example", testPassword},
		{"slash", "bob/by", testPassword},
		{"plus", "bob+by", testPassword},
		{"accented letter", "josé", testPassword},
		{"Cyrillic look-alike a", "\u0430lice", testPassword},
		{"fullwidth look-alike", "\uff41lice", testPassword},
		{"Kelvin sign, which lower-cases to k", "\u212Aate", testPassword},
		{"dotted capital I, which lower-cases to i", "\u0130van", testPassword},
		{"zero-width space", "ali\u200bce", testPassword},
		{"emoji", "bob😀", testPassword},
		{"password of 7 bytes", "pw7", "1234567"},
		{"empty password", "pw0", ""},
		{"password of 73 bytes", "pw73", strings.Repeat("p", 73)},
		{"password of 74 bytes in 37 two-byte characters", "pw74u", strings.Repeat("é", 37)},
	}
	for _, tc := range bad {
		t.Run("refuses "+tc.name, func(t *testing.T) {
			t.Parallel()
			r := s.Do(t, call{Method: "POST", Path: "/api/v1/auth/register", Body: map[string]string{"username": tc.username, "password": tc.password}})
			hosttest.WantError(t, r, http.StatusBadRequest, "invalid_request")
		})
	}

	t.Run("a look-alike of an existing user is not that user", func(t *testing.T) {
		t.Parallel()
		s.register(t, "kate")
		r := s.Do(t, call{Method: "POST", Path: "/api/v1/auth/login", Body: map[string]string{"username": "\u212Aate", "password": testPassword}})
		hosttest.WantError(t, r, http.StatusUnauthorized, "invalid_credentials")
	})

	t.Run("missing fields", func(t *testing.T) {
		t.Parallel()
		r := s.Do(t, call{Method: "POST", Path: "/api/v1/auth/register", Body: `{}`})
		hosttest.WantError(t, r, http.StatusBadRequest, "invalid_request")
	})
}

func TestLogin(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)

	t.Run("answers token, user, expires_at and the cookie", func(t *testing.T) {
		t.Parallel()
		name := s.name("login")
		u := s.register(t, name)
		before := time.Now()
		r := s.Do(t, call{Method: "POST", Path: "/api/v1/auth/login", Body: map[string]string{"username": strings.ToUpper(name), "password": testPassword}})
		hosttest.WantStatus(t, r, http.StatusOK)
		var raw map[string]any
		r.Decode(t, &raw)
		if len(raw) != 3 {
			t.Errorf("login answered %s, want exactly token, user, expires_at", r.Body)
		}
		var l loginAnswer
		r.Decode(t, &l)
		if l.User != u {
			t.Errorf("user %+v, want %+v", l.User, u)
		}
		if len(l.Token) != 43 || strings.ContainsAny(l.Token, "+/=") {
			t.Errorf("token %q: want 32 random bytes in unpadded base64url", l.Token)
		}
		exp := wantUTC(t, "expires_at", l.ExpiresAt)
		if d := exp.Sub(before); d < 743*time.Hour || d > 745*time.Hour {
			t.Errorf("expires_at %s is %s ahead, want the default session TTL 744h", l.ExpiresAt, d)
		}

		var ck *http.Cookie
		for _, c := range r.Cookies {
			if c.Name == httpapi.CookieName {
				ck = c
			}
		}
		if ck == nil {
			t.Fatalf("no %s cookie in %v", httpapi.CookieName, r.Header.Values("Set-Cookie"))
		}
		set := strings.Join(r.Header.Values("Set-Cookie"), "; ")
		if ck.Value != l.Token || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" || ck.Secure {
			t.Errorf("Set-Cookie %s: want the token, HttpOnly, SameSite=Lax, Path=/, not Secure by default", set)
		}
		if ck.MaxAge != int((744 * time.Hour).Seconds()) {
			t.Errorf("Set-Cookie %s: want Max-Age the session's lifetime, 2678400 (CHAT_SESSION_TTL 744h)", set)
		}
	})

	t.Run("wrong password and unknown user get identical 401 bodies", func(t *testing.T) {
		t.Parallel()
		name := s.name("wrongpw")
		s.register(t, name)
		wrong := s.Do(t, call{Method: "POST", Path: "/api/v1/auth/login", Body: map[string]string{"username": name, "password": "not the password"}})
		unknown := s.Do(t, call{Method: "POST", Path: "/api/v1/auth/login", Body: map[string]string{"username": s.name("nobody"), "password": testPassword}})
		invalid := s.Do(t, call{Method: "POST", Path: "/api/v1/auth/login", Body: map[string]string{"username": "no such user!", "password": testPassword}})
		for _, r := range []reply{wrong, unknown, invalid} {
			hosttest.WantError(t, r, http.StatusUnauthorized, "invalid_credentials")
			if len(r.Cookies) != 0 {
				t.Errorf("a failed login set cookies %v", r.Header.Values("Set-Cookie"))
			}
		}
		if !bytes.Equal(wrong.Body, unknown.Body) || !bytes.Equal(wrong.Body, invalid.Body) {
			t.Errorf("bodies differ:\nwrong password %s\nunknown user   %s\ninvalid name   %s", wrong.Body, unknown.Body, invalid.Body)
		}
	})

	t.Run("5 failed logins for one username, then 429 with Retry-After", func(t *testing.T) {
		t.Parallel()
		name := s.name("limited")
		s.register(t, name)
		for i := 1; i <= 5; i++ {
			r := s.Do(t, call{Method: "POST", Path: "/api/v1/auth/login", Body: map[string]string{"username": name, "password": "wrong password " + strconv.Itoa(i)}})
			hosttest.WantError(t, r, http.StatusUnauthorized, "invalid_credentials")
		}
		// Now even the right password is refused, in any case of the name.
		for _, n := range []string{name, strings.ToUpper(name)} {
			r := s.Do(t, call{Method: "POST", Path: "/api/v1/auth/login", Body: map[string]string{"username": n, "password": testPassword}})
			hosttest.WantError(t, r, http.StatusTooManyRequests, "rate_limited")
			secs, err := strconv.Atoi(r.Header.Get("Retry-After"))
			if err != nil || secs < 1 || secs > 15*60 {
				t.Errorf("Retry-After %q: want whole seconds in 1..900", r.Header.Get("Retry-After"))
			}
		}
		// Another username is not affected.
		other := s.name("notlimited")
		s.register(t, other)
		s.login(t, other)
	})

	t.Run("failed logins of an unknown username are limited too", func(t *testing.T) {
		t.Parallel()
		name := s.name("ghost")
		for i := 0; i < 5; i++ {
			r := s.Do(t, call{Method: "POST", Path: "/api/v1/auth/login", Body: map[string]string{"username": name, "password": testPassword}})
			hosttest.WantError(t, r, http.StatusUnauthorized, "invalid_credentials")
		}
		r := s.Do(t, call{Method: "POST", Path: "/api/v1/auth/login", Body: map[string]string{"username": name, "password": testPassword}})
		hosttest.WantError(t, r, http.StatusTooManyRequests, "rate_limited")
	})

	t.Run("password over 72 bytes is 400", func(t *testing.T) {
		t.Parallel()
		r := s.Do(t, call{Method: "POST", Path: "/api/v1/auth/login", Body: map[string]string{"username": s.name("long"), "password": strings.Repeat("p", 73)}})
		hosttest.WantError(t, r, http.StatusBadRequest, "invalid_request")
	})
}

func TestSession(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)

	t.Run("cookie and Bearer both authenticate GET /me", func(t *testing.T) {
		t.Parallel()
		u := s.newUser(t, "me")
		want := apiUser{ID: u.ID, Username: u.Username}
		for name, c := range map[string]call{
			"bearer":            {Method: "GET", Path: "/api/v1/me", Token: u.Token},
			"cookie":            {Method: "GET", Path: "/api/v1/me", Cookie: u.Token},
			"lower-case bearer": {Method: "GET", Path: "/api/v1/me", Header: http.Header{"Authorization": {"bearer " + u.Token}}},
		} {
			r := s.Do(t, c)
			hosttest.WantStatus(t, r, http.StatusOK)
			var out map[string]apiUser
			r.Decode(t, &out)
			if out["user"] != want || len(out) != 1 {
				t.Errorf("%s: /me answered %s, want {user: %+v}", name, r.Body, want)
			}
		}
	})

	t.Run("bad credentials are 401", func(t *testing.T) {
		t.Parallel()
		u := s.newUser(t, "bad")
		for name, c := range map[string]call{
			"no session":                      {},
			"unknown bearer token":            {Token: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
			"unknown cookie":                  {Cookie: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
			"token's hash as bearer":          {Token: sha256Hex(u.Token)},
			"huge bearer token":               {Token: strings.Repeat("A", 4000)},
			"basic auth, with a valid cookie": {Cookie: u.Token, Header: http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}}},
			"empty bearer":                    {Header: http.Header{"Authorization": {"Bearer "}}},
		} {
			c.Method, c.Path = "GET", "/api/v1/me"
			r := s.Do(t, c)
			if r.Status != http.StatusUnauthorized {
				t.Errorf("%s: status %d, want 401; body %s", name, r.Status, r.Body)
				continue
			}
			hosttest.WantError(t, r, http.StatusUnauthorized, "unauthenticated")
		}
	})

	t.Run("logout answers 204, clears the cookie, and the token is dead", func(t *testing.T) {
		t.Parallel()
		for _, via := range []string{"bearer", "cookie"} {
			u := s.newUser(t, "logout")
			other := s.login(t, u.Username) // a second session of the same user
			c := call{Method: "POST", Path: "/api/v1/auth/logout"}
			if via == "bearer" {
				c.Token = u.Token
			} else {
				c.Cookie = u.Token
			}
			r := s.Do(t, c)
			hosttest.WantStatus(t, r, http.StatusNoContent)
			if len(r.Body) != 0 {
				t.Errorf("%s: 204 with body %q", via, r.Body)
			}
			cleared := false
			for _, ck := range r.Cookies {
				cleared = cleared || (ck.Name == httpapi.CookieName && ck.Value == "" && ck.MaxAge < 0)
			}
			if !cleared {
				t.Errorf("%s: logout did not clear the cookie: %v", via, r.Header.Values("Set-Cookie"))
			}
			for _, again := range []call{
				{Method: "GET", Path: "/api/v1/me", Token: u.Token},
				{Method: "GET", Path: "/api/v1/me", Cookie: u.Token},
				{Method: "POST", Path: "/api/v1/auth/logout", Token: u.Token},
			} {
				hosttest.WantError(t, s.Do(t, again), http.StatusUnauthorized, "unauthenticated")
			}
			// Only that session ended.
			hosttest.WantStatus(t, s.Do(t, call{Method: "GET", Path: "/api/v1/me", Token: other.Token}), http.StatusOK)
		}
	})

	t.Run("Redis holds only the SHA-256 of the token", func(t *testing.T) {
		t.Parallel()
		u := s.newUser(t, "hashed")
		dump := s.redisDump(t)
		key := s.Prefix + "session:" + sha256Hex(u.Token)
		if _, ok := dump[key]; !ok {
			t.Errorf("no key %s among %d keys", key, len(dump))
		}
		for k, vals := range dump {
			if strings.Contains(k, u.Token) {
				t.Errorf("key %s holds the token", k)
			}
			for _, v := range vals {
				if strings.Contains(v, u.Token) {
					t.Errorf("value of %s holds the token: %s", k, v)
				}
			}
		}
		ttl, err := s.Redis.TTL(t.Context(), key).Result()
		if err != nil || ttl < 743*time.Hour || ttl > 744*time.Hour {
			t.Errorf("TTL of %s = %v (%v), want about 744h", key, ttl, err)
		}
	})
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// TestAuthAddressLimit: logins and registrations from one client address share a
// budget per minute (section 8).
func TestAuthAddressLimit(t *testing.T) {
	t.Parallel()
	s := newServer(t, map[string]string{"CHAT_LIMIT_AUTH_PER_MINUTE": "3"})
	name := s.name("addr")
	s.register(t, name)
	s.login(t, name)
	r := s.Do(t, call{Method: "POST", Path: "/api/v1/auth/login", Body: map[string]string{"username": name, "password": "wrong password"}})
	hosttest.WantError(t, r, http.StatusUnauthorized, "invalid_credentials")
	for _, path := range []string{"/api/v1/auth/login", "/api/v1/auth/register"} {
		r := s.Do(t, call{Method: "POST", Path: path, Body: map[string]string{"username": s.name("addr"), "password": testPassword}})
		hosttest.WantError(t, r, http.StatusTooManyRequests, "rate_limited")
		if secs, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || secs < 1 || secs > 60 {
			t.Errorf("%s: Retry-After %q, want whole seconds in 1..60", path, r.Header.Get("Retry-After"))
		}
	}
}

// TestSecureCookie: with CHAT_COOKIE_SECURE the session cookie is marked Secure.
func TestSecureCookie(t *testing.T) {
	t.Parallel()
	s := newServer(t, map[string]string{"CHAT_COOKIE_SECURE": "true"})
	name := s.name("secure")
	s.register(t, name)
	r := s.Do(t, call{Method: "POST", Path: "/api/v1/auth/login", Body: map[string]string{"username": name, "password": testPassword}})
	hosttest.WantStatus(t, r, http.StatusOK)
	for _, c := range r.Cookies {
		if c.Name == httpapi.CookieName {
			if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode {
				t.Fatalf("Set-Cookie %v: want Secure, HttpOnly, SameSite=Lax", r.Header.Values("Set-Cookie"))
			}
			return
		}
	}
	t.Fatalf("no %s cookie", httpapi.CookieName)
}
