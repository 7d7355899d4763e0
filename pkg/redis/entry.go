package redis

import (
	"encoding/json"
	"time"

	"github.com/switchboard-chat/switchboard/pkg/jsonscan"
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
		key, rest, ok := jsonscan.String(s)
		if !ok || len(rest) == 0 || rest[0] != ':' {
			return entry{}, false
		}
		val, rest, ok := jsonscan.String(rest[1:])
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
			t, ok := parseUTC(val)
			if !ok {
				var err error
				if t, err = time.Parse(time.RFC3339Nano, val); err != nil {
					return entry{}, false
				}
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

// parseUTC reads the one form AddConnections writes, 2006-01-02T15:04:05[.fraction]Z,
// without time.Parse's generality (a tenth of the cost, a hundred times a message to a
// large thread); ok is false for anything else, which time.Parse then judges.
func parseUTC(s string) (time.Time, bool) {
	if len(s) < 20 || s[len(s)-1] != 'Z' || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' {
		return time.Time{}, false
	}
	num := func(a, b int) (int, bool) {
		n := 0
		for i := a; i < b; i++ {
			c := s[i]
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	year, ok1 := num(0, 4)
	month, ok2 := num(5, 7)
	day, ok3 := num(8, 10)
	hour, ok4 := num(11, 13)
	minute, ok5 := num(14, 16)
	sec, ok6 := num(17, 19)
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !ok6 || month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	nsec := 0
	if frac := s[19 : len(s)-1]; frac != "" {
		if frac[0] != '.' || len(frac) < 2 || len(frac) > 10 {
			return time.Time{}, false
		}
		n, ok := num(20, len(s)-1)
		if !ok {
			return time.Time{}, false
		}
		for i := len(frac) - 1; i < 9; i++ {
			n *= 10
		}
		nsec = n
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC)
	if t.Day() != day { // 31 April and the like: leave it to time.Parse, which refuses it
		return time.Time{}, false
	}
	return t, true
}
