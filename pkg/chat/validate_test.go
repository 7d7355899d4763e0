package chat_test

import (
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/pkg/chat"
)

func TestNormalizeUsername(t *testing.T) {
	t.Parallel()
	good := []struct{ in, want string }{
		{"alice", "alice"},
		{"Alice", "alice"},
		{"ALICE", "alice"},
		{"aLiCe_01.x-y", "alice_01.x-y"},
		{"abc", "abc"},
		{"___", "___"},
		{"...", "..."},
		{"0-9", "0-9"},
		{strings.Repeat("Z", 32), strings.Repeat("z", 32)},
	}
	for _, tc := range good {
		t.Run("ok "+tc.in, func(t *testing.T) {
			t.Parallel()
			got, err := chat.NormalizeUsername(tc.in)
			if err != nil || got != tc.want {
				t.Fatalf("NormalizeUsername(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
			// Idempotent.
			if again, err := chat.NormalizeUsername(got); err != nil || again != got {
				t.Fatalf("not idempotent: %q -> %q, %v", got, again, err)
			}
		})
	}
	bad := []string{
		"", "a", "ab", "AB", strings.Repeat("a", 33),
		"al ice", " alice", "alice ", "al\tice", "al\nice", "al\x00ice", "alice\x00",
		"al!ce", "al@ce", "al/ce", "al+ce", "al:ce", "al,ce", "al'ce", `al"ce`, "al\\ce",
		"josé", "JOSÉ", "ölaf",
		"\u0430lice",         // Cyrillic а
		"\uff41lice",         // fullwidth a
		"\u212Aate",          // Kelvin sign: strings.ToLower makes it "k"
		"\u0130van",          // dotted capital I: strings.ToLower makes it "i"
		"\u212Bngstrom",      // Angstrom sign
		"ali\u200bce",        // zero-width space
		"ali\u00adce",        // soft hyphen
		"alice\u0301",        // combining accent
		"\u212A\u212A\u212A", // three Kelvin signs: 9 bytes, 3 characters
		"ａｂｃ",
		"bob😀",
		"\xff\xfe\xfd",
	}
	for _, in := range bad {
		t.Run("bad "+strconv.Quote(in), func(t *testing.T) {
			t.Parallel()
			got, err := chat.NormalizeUsername(in)
			if chat.ErrorCode(err) != chat.EInvalid {
				t.Fatalf("NormalizeUsername(%q) = %q, %v; want invalid_request", in, got, err)
			}
		})
	}
}

func TestValidatePassword(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		pw   string
		ok   bool
	}{
		{"empty", "", false},
		{"7 bytes", "1234567", false},
		{"8 bytes", "12345678", true},
		{"4 two-byte characters are 8 bytes", "éééé", true},
		{"7 characters of 3 bytes each", strings.Repeat("€", 7), true},
		{"72 bytes", strings.Repeat("x", 72), true},
		{"73 bytes", strings.Repeat("x", 73), false},
		{"36 two-byte characters are 72 bytes", strings.Repeat("é", 36), true},
		{"37 two-byte characters are 74 bytes", strings.Repeat("é", 37), false},
		{"NUL bytes count", "\x00\x00\x00\x00\x00\x00\x00\x00", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := chat.ValidatePassword(tc.pw)
			if tc.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.ok && chat.ErrorCode(err) != chat.EInvalid {
				t.Fatalf("got %v, want invalid_request", err)
			}
		})
	}
}

func TestValidateBody(t *testing.T) {
	t.Parallel()
	const max = 8192
	for _, tc := range []struct {
		name string
		body string
		code string // "" for ok
	}{
		{"one byte", "x", ""},
		{"a space", " ", ""},
		{"exactly max bytes", strings.Repeat("a", max), ""},
		{"max bytes of 4-byte characters", strings.Repeat("😀", max/4), ""},
		{"newlines and tabs", "a\n\tb\r\n", ""},
		{"empty", "", chat.EInvalid},
		{"max+1 bytes", strings.Repeat("a", max+1), chat.ETooLarge},
		{"max+2 bytes of 2-byte characters", strings.Repeat("é", max/2+1), chat.ETooLarge},
		{"NUL", "a\x00b", chat.EInvalid},
		{"only NUL", "\x00", chat.EInvalid},
		{"invalid UTF-8", "a\xffb", chat.EInvalid},
		{"truncated UTF-8", "\xe2\x82", chat.EInvalid},
		{"UTF-8 surrogate", "\xed\xa0\x80", chat.EInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := chat.ValidateBody(tc.body, max)
			if got := chat.ErrorCode(err); got != tc.code {
				t.Fatalf("ValidateBody: %v, want code %q", err, tc.code)
			}
		})
	}
}

func TestValidateClientMsgID(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		id   string
		ok   bool
	}{
		{"one character", "a", true},
		{"64 characters", strings.Repeat("k", 64), true},
		{"space and tilde", " ~", true},
		{"every printable character", printableASCII(), true},
		{"empty", "", false},
		{"65 characters", strings.Repeat("k", 65), false},
		{"tab", "a\tb", false},
		{"newline", "a\n", false},
		{"NUL", "\x00", false},
		{"unit separator 0x1f", "\x1f", false},
		{"DEL 0x7f", "\x7f", false},
		{"non-ASCII", "é", false},
		{"invalid UTF-8", "\xff", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := chat.ValidateClientMsgID(tc.id)
			if tc.ok && err != nil {
				t.Fatalf("refused %q: %v", tc.id, err)
			}
			if !tc.ok && chat.ErrorCode(err) != chat.EInvalid {
				t.Fatalf("%q: got %v, want invalid_request", tc.id, err)
			}
		})
	}
}

func printableASCII() string {
	var b strings.Builder
	for c := byte(0x20); c <= 0x7e && b.Len() < 64; c++ {
		b.WriteByte(c)
	}
	return b.String()
}

func TestValidateThreadName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in string
		ok       bool
	}{
		{"plain", "Team", true},
		{"emoji", "🚀 launch", true},
		{"200 bytes", strings.Repeat("n", 200), true},
		{"empty", "", false},
		{"blank", " \t\n", false},
		{"201 bytes", strings.Repeat("n", 201), false},
		{"NUL", "a\x00", false},
		{"invalid UTF-8", "a\xff", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := chat.ValidateThreadName(tc.in)
			if (err == nil) != tc.ok || (err != nil && chat.ErrorCode(err) != chat.EInvalid) {
				t.Fatalf("ValidateThreadName(%q) = %v, want ok=%v", tc.in, err, tc.ok)
			}
		})
	}
}

var uuidV7 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestNewID(t *testing.T) {
	t.Parallel()
	before := time.Now().UnixMilli()
	id := chat.NewID()
	after := time.Now().UnixMilli()
	if !uuidV7.MatchString(id) {
		t.Fatalf("NewID() = %q, want a lower-case UUIDv7", id)
	}
	if !chat.ValidID(id) {
		t.Fatalf("ValidID(NewID()) is false for %q", id)
	}
	ms, err := strconv.ParseInt(strings.ReplaceAll(id[:13], "-", ""), 16, 64)
	if err != nil || ms < before || ms > after {
		t.Fatalf("timestamp of %s is %d, want %d..%d", id, ms, before, after)
	}

	t.Run("unique and time-ordered", func(t *testing.T) {
		t.Parallel()
		const n = 20000
		seen := make(map[string]bool, n)
		prev := ""
		for i := 0; i < n; i++ {
			id := chat.NewID()
			if seen[id] {
				t.Fatalf("duplicate id %s after %d", id, i)
			}
			seen[id] = true
			// The 48-bit millisecond prefix never goes back.
			if prev != "" && id[:13] < prev[:13] {
				t.Fatalf("%s sorts before the earlier %s", id, prev)
			}
			prev = id
		}
	})

	t.Run("unique across goroutines", func(t *testing.T) {
		t.Parallel()
		var (
			mu   sync.Mutex
			seen = map[string]bool{}
			wg   sync.WaitGroup
		)
		for g := 0; g < 8; g++ {
			wg.Go(func() {
				local := make([]string, 2000)
				for i := range local {
					local[i] = chat.NewID()
				}
				mu.Lock()
				defer mu.Unlock()
				for _, id := range local {
					if seen[id] {
						t.Errorf("duplicate id %s", id)
					}
					seen[id] = true
				}
			})
		}
		wg.Wait()
	})
}

func TestValidID(t *testing.T) {
	t.Parallel()
	id := chat.NewID()
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{id, true},
		{"01890000-0000-7000-8000-000000000000", true},
		{"00000000-0000-0000-0000-000000000000", true},
		{"", false},
		{strings.ToUpper(id), false},
		{id[:35], false},
		{id + "0", false},
		{strings.ReplaceAll(id, "-", ""), false},
		{"0189000000000-7000-8000-000000000000", false},
		{"01890000-0000-7000-8000-00000000000g", false},
		{"01890000_0000_7000_8000_000000000000", false},
		{"{1890000-0000-7000-8000-000000000000}", false},
		{"01890000-0000-7000-8000-0000000000\x00\x00", false},
		{"' OR 1=1 --                         ", false},
	} {
		if got := chat.ValidID(tc.in); got != tc.ok {
			t.Errorf("ValidID(%q) = %v, want %v", tc.in, got, tc.ok)
		}
	}
}

func TestHashToken(t *testing.T) {
	t.Parallel()
	// SHA-256("abc"), FIPS 180-2 test vector.
	const want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	if got := chat.HashToken("abc"); got != want {
		t.Fatalf("HashToken(abc) = %s, want %s", got, want)
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	if got := chat.ErrorCode(nil); got != "" {
		t.Errorf("ErrorCode(nil) = %q", got)
	}
	plain := errorString("pq: password authentication failed for user secret")
	if chat.ErrorCode(plain) != chat.EInternal || chat.ErrorMessage(plain) != "internal error" {
		t.Errorf("a plain error must be internal with a bland message, got %q %q", chat.ErrorCode(plain), chat.ErrorMessage(plain))
	}
	wrapped := wrap(chat.Errorf(chat.ENotFound, "thread %s", "x"))
	if chat.ErrorCode(wrapped) != chat.ENotFound || chat.ErrorMessage(wrapped) != "thread x" {
		t.Errorf("a wrapped *Error must keep its code and message, got %q %q", chat.ErrorCode(wrapped), chat.ErrorMessage(wrapped))
	}
	for _, tc := range []struct {
		d    time.Duration
		secs string
	}{{0, "1s"}, {200 * time.Millisecond, "1s"}, {1500 * time.Millisecond, "2s"}, {3 * time.Minute, "180s"}} {
		e := chat.RateLimited(tc.d)
		if e.Code != chat.ERateLimited || e.RetryAfter != tc.d || !strings.HasSuffix(e.Message, tc.secs) {
			t.Errorf("RateLimited(%v) = %+v, want a message ending %s", tc.d, e, tc.secs)
		}
	}
}

type errorString string

func (e errorString) Error() string { return string(e) }

type wrapper struct{ err error }

func (w wrapper) Error() string { return "context: " + w.err.Error() }
func (w wrapper) Unwrap() error { return w.err }

func wrap(err error) error { return wrapper{err} }
