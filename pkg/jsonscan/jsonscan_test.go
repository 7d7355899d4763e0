package jsonscan

import (
	"encoding/json"
	"testing"
)

func TestString(t *testing.T) {
	for _, c := range []struct {
		in, val, rest string
		ok            bool
	}{
		{`"abc",x`, "abc", ",x", true},
		{`""`, "", "", true},
		{`"a\"b"`, "", "", false},    // escape
		{`"a\u0041"`, "", "", false}, // escape
		{"\"a\nb\"", "", "", false},  // control character
		{"\"é\"", "", "", false},     // non-ASCII
		{`"abc`, "", "", false},      // unterminated
		{`abc"`, "", "", false},      // not a string
		{``, "", "", false},
	} {
		val, rest, ok := String(c.in)
		if val != c.val || rest != c.rest || ok != c.ok {
			t.Errorf("String(%q) = %q, %q, %v; want %q, %q, %v", c.in, val, rest, ok, c.val, c.rest, c.ok)
		}
	}
}

// FuzzString: whatever String accepts, encoding/json reads as the same string.
func FuzzString(f *testing.F) {
	f.Add(`"abc",1`)
	f.Add(`"a\"b"`)
	f.Fuzz(func(t *testing.T, s string) {
		val, rest, ok := String(s)
		if !ok {
			return
		}
		var want string
		if err := json.Unmarshal([]byte(s[:len(s)-len(rest)]), &want); err != nil || want != val {
			t.Fatalf("String(%q) = %q; encoding/json: %q, %v", s, val, want, err)
		}
	})
}
