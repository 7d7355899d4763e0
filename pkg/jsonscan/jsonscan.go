// Package jsonscan reads the few JSON shapes that hot paths write themselves (presence
// entries, the internal deliver call) without encoding/json's reflection. It only
// recognises what it is sure of and says so; callers hand anything else to
// encoding/json, which stays the reference for what the JSON means.
package jsonscan

import "strings"

// String reads a JSON string at the start of s when it is plain printable ASCII with
// no escapes: ok is false for anything else (an escape, a control character, a byte
// of 0x80 or above, whose UTF-8 validity and replacement encoding/json judges), and
// the caller falls back.
func String(s string) (val, rest string, ok bool) {
	if len(s) == 0 || s[0] != '"' {
		return "", "", false
	}
	end := strings.IndexByte(s[1:], '"')
	if end < 0 {
		return "", "", false
	}
	val = s[1 : 1+end]
	for i := 0; i < len(val); i++ {
		if c := val[i]; c == '\\' || c < 0x20 || c >= 0x80 {
			return "", "", false
		}
	}
	return val, s[2+end:], true
}
