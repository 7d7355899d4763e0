package redis

import (
	"encoding/json"
	"strings"
	"time"
)

// decodeEntry reads a presence entry. Entries are the flat JSON objects AddConnections
// writes, so the common case is scanned here directly: encoding/json (reflection, a
// []byte copy, time.Time's UnmarshalJSON) was nearly half of the CPU of a 100-member
// lookup, which every message to a large thread pays. Anything the scanner does not
// expect (escapes, other value types, whitespace, unknown keys) goes to encoding/json,
// which stays the reference.
func decodeEntry(val string) (entry, error) {
	if e, ok := scanEntry(val); ok {
		return e, nil
	}
	var e entry
	err := json.Unmarshal([]byte(val), &e)
	return e, err
}

// scanEntry parses {"key":"value",...} with string values free of escapes; ok is false
// for anything else.
func scanEntry(s string) (e entry, ok bool) {
	if len(s) < 2 || s[0] != '{' || s[len(s)-1] != '}' {
		return entry{}, false
	}
	s = s[1 : len(s)-1]
	for len(s) > 0 {
		key, rest, ok := scanString(s)
		if !ok || len(rest) == 0 || rest[0] != ':' {
			return entry{}, false
		}
		val, rest, ok := scanString(rest[1:])
		if !ok {
			return entry{}, false
		}
		switch key {
		case "host_id":
			e.HostID = val
		case "conn_id":
			e.ConnID = val
		case "instance":
			e.Instance = val
		case "since":
			t, err := time.Parse(time.RFC3339Nano, val)
			if err != nil {
				return entry{}, false
			}
			e.Since = t
		default:
			return entry{}, false
		}
		if len(rest) == 0 {
			break
		}
		if rest[0] != ',' {
			return entry{}, false
		}
		s = rest[1:]
		if len(s) == 0 {
			return entry{}, false // trailing comma
		}
	}
	return e, true
}

// scanString reads a JSON string of plain ASCII without escapes at the start of s.
func scanString(s string) (val, rest string, ok bool) {
	if len(s) == 0 || s[0] != '"' {
		return "", "", false
	}
	end := strings.IndexByte(s[1:], '"')
	if end < 0 {
		return "", "", false
	}
	val = s[1 : 1+end]
	for i := 0; i < len(val); i++ {
		if c := val[i]; c == '\\' || c < 0x20 || c >= 0x80 { // non-ASCII: let encoding/json judge the UTF-8
			return "", "", false
		}
	}
	return val, s[2+end:], true
}
