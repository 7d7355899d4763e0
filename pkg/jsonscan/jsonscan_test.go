package jsonscan

import (
	"encoding/json"
	"reflect"
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

func TestExactKeys(t *testing.T) {
	type req struct {
		Username string `json:"username"`
		Password string `json:"password,omitempty"`
		Skipped  string `json:"-"`
		Plain    string
		hidden   string //nolint:unused // an unexported field has no JSON name
	}
	names := FieldNames(reflect.TypeFor[*req]())
	if len(names) != 3 || !names["username"] || !names["password"] || !names["Plain"] {
		t.Fatalf("FieldNames = %v, want username, password and Plain", names)
	}
	for _, c := range []struct{ in, want string }{
		{`{"username":"a","password":"b"}`, `{"username":"a","password":"b"}`},   // untouched, byte for byte
		{`{"username":"a","extra":{"X":1}}`, `{"username":"a","extra":{"X":1}}`}, // unknown names stay
		{`{"USERNAME":"a","password":"b"}`, `{"password":"b"}`},                  // folded: dropped
		{`{"username":"a","UserName":"b","plain":"c"}`, `{"username":"a"}`},      // whichever the order
		{`["USERNAME"]`, `["USERNAME"]`},                                         // not an object
		{`{"USERNAME":`, `{"USERNAME":`},                                         // not JSON
	} {
		if got := string(ExactKeys([]byte(c.in), names)); got != c.want {
			t.Errorf("ExactKeys(%s) = %s, want %s", c.in, got, c.want)
		}
	}
}

func TestUpperKey(t *testing.T) {
	for _, c := range []struct {
		in   string
		want bool
	}{
		{`{"type":"send","body":"Hello, World"}`, false},
		{`{"type":"send","Body":"x"}`, true},
		{`{"BODY":"x"}`, true},
		{`{"body":"x","\u0062ody":"y"}`, true}, // an escape may spell anything
		{`{"body":"say \"Hi\", \"Body\":"}`, false},
		{`{"a":{"Nested":1},"b":["X",{"Deep":2}]}`, false}, // only the top level binds
		{`{"a":[1,2],"Late":3}`, true},
		{`["Upper"]`, false},
		{`{"unterminated`, false},
	} {
		if got := UpperKey([]byte(c.in)); got != c.want {
			t.Errorf("UpperKey(%s) = %v, want %v", c.in, got, c.want)
		}
	}
}
