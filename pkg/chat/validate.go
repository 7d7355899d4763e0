package chat

import (
	"strings"
	"unicode/utf8"
)

// Limits on user input that are part of the contract rather than settings.
const (
	MinUsernameLen    = 3
	MaxUsernameLen    = 32
	MinPasswordBytes  = 8
	MaxPasswordBytes  = 72 // bcrypt's limit: longer is refused, never silently cut
	MaxClientMsgIDLen = 64
	MaxThreadNameLen  = 200
)

// NormalizeUsername folds upper case to lower case and checks the result against the
// contract's alphabet, so "Alice" and "alice" are one user everywhere. Only ASCII A-Z
// is folded: Unicode case mapping would turn look-alikes such as the Kelvin sign
// (U+212A) or a dotted capital I (U+0130) into "k" and "i", so they are refused instead.
func NormalizeUsername(s string) (string, error) {
	if len(s) < MinUsernameLen || len(s) > MaxUsernameLen {
		return "", Errorf(EInvalid, "username must be %d to %d characters", MinUsernameLen, MaxUsernameLen)
	}
	u := []byte(s)
	for i, c := range u {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
			u[i] = c
		}
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' && c != '.' && c != '-' {
			return "", Errorf(EInvalid, "username may only contain a-z, 0-9, '_', '.' and '-'")
		}
	}
	return string(u), nil
}

// ValidatePassword checks the byte length of a password.
func ValidatePassword(p string) error {
	if len(p) < MinPasswordBytes || len(p) > MaxPasswordBytes {
		return Errorf(EInvalid, "password must be %d to %d bytes", MinPasswordBytes, MaxPasswordBytes)
	}
	return nil
}

// ValidateBody checks a message body: UTF-8, no NUL, 1..max bytes. Over max is
// ETooLarge so transports can answer 413 / too_large.
func ValidateBody(body string, max int) error {
	if body == "" {
		return Errorf(EInvalid, "body must not be empty")
	}
	if len(body) > max {
		return Errorf(ETooLarge, "body is over %d bytes", max)
	}
	if !utf8.ValidString(body) {
		return Errorf(EInvalid, "body must be UTF-8")
	}
	if strings.IndexByte(body, 0) >= 0 {
		return Errorf(EInvalid, "body must not contain NUL")
	}
	return nil
}

// ValidateClientMsgID checks 1..64 printable ASCII characters.
func ValidateClientMsgID(id string) error {
	if id == "" || len(id) > MaxClientMsgIDLen {
		return Errorf(EInvalid, "client_msg_id must be 1 to %d printable ASCII characters", MaxClientMsgIDLen)
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x20 || id[i] > 0x7e {
			return Errorf(EInvalid, "client_msg_id must be 1 to %d printable ASCII characters", MaxClientMsgIDLen)
		}
	}
	return nil
}

// ValidateThreadName checks a thread name: UTF-8 without NUL, 1..200 bytes.
func ValidateThreadName(name string) error {
	if strings.TrimSpace(name) == "" || len(name) > MaxThreadNameLen {
		return Errorf(EInvalid, "name must be 1 to %d bytes", MaxThreadNameLen)
	}
	if !utf8.ValidString(name) || strings.IndexByte(name, 0) >= 0 {
		return Errorf(EInvalid, "name must be UTF-8 without NUL")
	}
	return nil
}

// ValidID reports whether s looks like an id we issue (so a store is never asked about
// garbage, and a malformed id is a plain not_found).
func ValidID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
		default:
			return false
		}
	}
	return true
}
