package httpapi_test

import (
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/switchboard-chat/switchboard/pkg/httpapi"
)

func TestClientAddr(t *testing.T) {
	t.Parallel()
	var trusted []*net.IPNet
	for _, c := range []string{"10.0.0.0/8", "::1/128"} {
		_, n, err := net.ParseCIDR(c)
		if err != nil {
			t.Fatal(err)
		}
		trusted = append(trusted, n)
	}
	for _, tc := range []struct {
		name string
		peer string
		xff  []string
		want string
	}{
		{"untrusted peer: its address, whatever it claims", "203.0.113.7:5000", []string{"198.51.100.1"}, "203.0.113.7"},
		{"trusted peer without a header", "10.1.1.1:5000", nil, "10.1.1.1"},
		{"trusted peer: the right-most entry", "10.1.1.1:5000", []string{"198.51.100.1, 198.51.100.2"}, "198.51.100.2"},
		{"trusted hops are skipped", "10.1.1.1:5000", []string{"198.51.100.1, 198.51.100.2, 10.9.9.9"}, "198.51.100.2"},
		{"several headers are one list", "10.1.1.1:5000", []string{"198.51.100.1", "198.51.100.3, 10.2.2.2"}, "198.51.100.3"},
		{"a forged left-most entry is ignored", "10.1.1.1:5000", []string{"127.0.0.1, 198.51.100.4"}, "198.51.100.4"},
		{"garbage entry: the peer", "10.1.1.1:5000", []string{"198.51.100.1, not-an-ip"}, "10.1.1.1"},
		{"only trusted hops: the peer", "10.1.1.1:5000", []string{"10.3.3.3"}, "10.1.1.1"},
		{"IPv6 peer", "[::1]:5000", []string{"2001:db8::1"}, "2001:db8::1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tc.peer
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := httpapi.ClientAddr(r, trusted); got != tc.want {
				t.Fatalf("ClientAddr = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestOriginPolicy(t *testing.T) {
	t.Parallel()
	p := httpapi.OriginPolicy{Allowed: []string{"https://chat.example.com/"}}
	for _, tc := range []struct {
		origin string
		ok     bool
	}{
		{"", true},
		{"http://chat.internal:8080", true},
		{"https://CHAT.internal:8080", true},
		{"https://chat.example.com", true},
		{"http://chat.internal:8081", false},
		{"http://chat.internal", false},
		{"http://chat.internal:8080.evil.example", false},
		{"https://chat.example.com.evil.example", false},
		{"http://chat.example.com", false},
		{"null", false},
		{"file://", false},
		{"::", false},
	} {
		r := httptest.NewRequest("POST", "http://chat.internal:8080/api/v1/threads", nil)
		if tc.origin != "" {
			r.Header.Set("Origin", tc.origin)
		}
		if got := p.Allow(r); got != tc.ok {
			t.Errorf("Allow(Origin %q) = %v, want %v", tc.origin, got, tc.ok)
		}
	}
}

func TestTokenFrom(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		auth       string
		cookie     string
		token      string
		fromCookie bool
	}{
		{"bearer", "Bearer abc", "", "abc", false},
		{"bearer in any case", "BEARER abc", "", "abc", false},
		{"bearer wins over the cookie", "Bearer abc", "def", "abc", false},
		{"cookie", "", "def", "def", true},
		{"another scheme hides the cookie", "Basic Zm9vOmJhcg==", "def", "", false},
		{"bare bearer", "Bearer", "", "", false},
		{"nothing", "", "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest("GET", "/", nil)
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			if tc.cookie != "" {
				r.AddCookie(&http.Cookie{Name: httpapi.CookieName, Value: tc.cookie})
			}
			tok, ck := httpapi.TokenFrom(r)
			if tok != tc.token || ck != tc.fromCookie {
				t.Fatalf("TokenFrom = %q, %v; want %q, %v", tok, ck, tc.token, tc.fromCookie)
			}
		})
	}
}
