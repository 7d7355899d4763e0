// Package jsonscan reads the few JSON shapes that hot paths write themselves (presence
// entries, the internal deliver call) without encoding/json's reflection. It only
// recognises what it is sure of and says so; callers hand anything else to
// encoding/json, which stays the reference for what the JSON means.
package jsonscan

import (
	"encoding/json"
	"reflect"
	"strings"
)

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

// FieldNames returns the JSON names encoding/json gives the fields of the struct t (or
// of the struct t points to): the json tag's name, else the field's name.
func FieldNames(t reflect.Type) map[string]bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	names := map[string]bool{}
	if t.Kind() != reflect.Struct {
		return names
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		names[name] = true
	}
	return names
}

// ExactKeys returns data, a JSON object, without the members whose name matches one of
// names only when case is ignored. encoding/json binds such a member to the field
// (`"BODY"` fills `body`), where the contract treats it as an unknown field, which is
// ignored. data that is not a JSON object is returned as it is, for encoding/json to
// refuse.
func ExactKeys(data []byte, names map[string]bool) []byte {
	var top map[string]json.RawMessage
	if json.Unmarshal(data, &top) != nil {
		return data
	}
	folded := false
	for k := range top {
		if !names[k] && foldedName(k, names) {
			delete(top, k)
			folded = true
		}
	}
	if !folded {
		return data
	}
	out, err := json.Marshal(top)
	if err != nil {
		return data
	}
	return out
}

func foldedName(k string, names map[string]bool) bool {
	for n := range names {
		if strings.EqualFold(k, n) {
			return true
		}
	}
	return false
}

// UpperKey reports whether a member name at the top level of the JSON object data may
// hold an upper-case letter: one written as such, or any escape (`\u0042` is B). It
// scans bytes and allocates nothing, so a decoder can skip ExactKeys when it answers
// false; on malformed input it may answer either way, and the decoder judges the input.
func UpperKey(data []byte) bool {
	depth, key := 0, false
	for i := 0; i < len(data); i++ {
		switch c := data[i]; c {
		case '"':
			suspect := false
			j := i + 1
			for ; j < len(data) && data[j] != '"'; j++ {
				switch b := data[j]; {
				case b == '\\':
					suspect = true
					j++
				case b >= 'A' && b <= 'Z':
					suspect = true
				}
			}
			if key && suspect {
				return true
			}
			key, i = false, j
		case '{', '[':
			depth++
			key = c == '{' && depth == 1
		case '}', ']':
			depth--
		case ',':
			key = depth == 1
		}
	}
	return false
}
