package chat

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Error codes are the snake_case codes of the wire contract. Every transport maps them
// to its own shape once (HTTP status in httpapi, error frames in ws), so a store or the
// service only ever says which code applies.
const (
	EInvalid            = "invalid_request"
	EUnauthenticated    = "unauthenticated"
	EInvalidCredentials = "invalid_credentials" //nolint:gosec // an error code, not a credential
	EForbidden          = "forbidden"
	EForbiddenOrigin    = "forbidden_origin"
	ENotFound           = "not_found"
	ENotMember          = "not_member"
	EUsernameTaken      = "username_taken"
	EUnknownUser        = "unknown_user"
	ERateLimited        = "rate_limited"
	ETooLarge           = "too_large"
	EUnsupportedMedia   = "unsupported_media_type"
	EMethodNotAllowed   = "method_not_allowed"
	EUnavailable        = "unavailable"
	EInternal           = "internal"
	// EHostIDTaken is never sent to clients: a host refuses to start with it.
	EHostIDTaken = "host_id_taken"
)

// Error is the one error type that crosses package boundaries with a meaning a client
// may see. Anything else is reported to clients as internal with a bland message.
type Error struct {
	Code    string
	Message string
	// Details is optional structured data, e.g. {"usernames": [...]} for unknown_user.
	Details map[string]any
	// RetryAfter is set with ERateLimited: how long until the caller may try again.
	RetryAfter time.Duration
}

// Error implements error as "code: message", the form logs show.
func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf is a helper returning an *Error with a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// RateLimited builds the rate_limited error with its retry hint. The message's whole
// seconds are rounded up, as the Retry-After header's are (pkg/httpapi), so the two
// never disagree and neither invites a retry that is still too early.
func RateLimited(retryAfter time.Duration) *Error {
	secs := int((retryAfter + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	return &Error{Code: ERateLimited, Message: "too many requests, retry in " + strconv.Itoa(secs) + "s", RetryAfter: retryAfter}
}

// ErrorCode unwraps err to its code; errors that carry none are EInternal.
func ErrorCode(err error) string {
	var e *Error
	if err == nil {
		return ""
	} else if errors.As(err, &e) {
		return e.Code
	}
	return EInternal
}

// ErrorMessage unwraps err to its client-safe message; internal errors get a bland
// message so that nothing about the stores leaks to clients.
func ErrorMessage(err error) string {
	var e *Error
	if err == nil {
		return ""
	} else if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}

// AsError returns the *Error inside err, or nil.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return nil
}
