package httpapi

import (
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/switchboard-chat/switchboard/pkg/chat"
)

// statusOf maps each error code of the contract to its HTTP status, in one place.
var statusOf = map[string]int{
	chat.EInvalid:            http.StatusBadRequest,
	chat.EUnknownUser:        http.StatusBadRequest,
	chat.EUnauthenticated:    http.StatusUnauthorized,
	chat.EInvalidCredentials: http.StatusUnauthorized,
	chat.EForbidden:          http.StatusForbidden,
	chat.EForbiddenOrigin:    http.StatusForbidden,
	chat.ENotFound:           http.StatusNotFound,
	chat.ENotMember:          http.StatusNotFound,
	chat.EUsernameTaken:      http.StatusConflict,
	chat.ETooLarge:           http.StatusRequestEntityTooLarge,
	chat.EUnsupportedMedia:   http.StatusUnsupportedMediaType,
	chat.EMethodNotAllowed:   http.StatusMethodNotAllowed,
	chat.ERateLimited:        http.StatusTooManyRequests,
	chat.EUnavailable:        http.StatusServiceUnavailable,
	chat.EInternal:           http.StatusInternalServerError,
}

// errorBody is the contract's error shape.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string         `json:"code"`
	Message string         `json:"message"`
	Details map[string]any `json:"details,omitempty"`
}

// writeError answers err in the contract's shape. Over HTTP a thread one is not a member
// of is simply not found, so not_member becomes not_found and a non-member learns
// nothing. Internal errors are logged here and reported blandly.
func (a *API) writeError(c *gin.Context, err error) {
	code := chat.ErrorCode(err)
	msg := chat.ErrorMessage(err)
	var details map[string]any
	if e := chat.AsError(err); e != nil {
		details = e.Details
		if e.Code == chat.ERateLimited {
			secs := int((e.RetryAfter + 999_999_999) / 1_000_000_000)
			if secs < 1 {
				secs = 1
			}
			c.Header("Retry-After", strconv.Itoa(secs))
		}
	}
	if code == chat.ENotMember {
		code, msg = chat.ENotFound, "no such thread"
	}
	status, ok := statusOf[code]
	if !ok {
		status = http.StatusInternalServerError
	}
	if status >= 500 && c.Request.Context().Err() == nil {
		// (A request the client abandoned is not a server failure.)
		a.log.Error("request failed", "method", c.Request.Method, "route", c.FullPath(), "code", code, "err", err)
	}
	c.AbortWithStatusJSON(status, errorBody{Error: errorDetail{Code: code, Message: msg, Details: details}})
}

// errorMiddleware writes the last error a handler recorded with c.Error, so handlers
// just return errors and the shape is decided once.
func (a *API) errorMiddleware(c *gin.Context) {
	c.Next()
	if len(c.Errors) > 0 && !c.Writer.Written() {
		a.writeError(c, c.Errors.Last().Err)
	}
}
