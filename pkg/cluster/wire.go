package cluster

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/jsonscan"
)

// The deliver call's body and answer are written and read here rather than through
// encoding/json's reflection: a message to a 100-member thread sends each other host a
// body and gets an answer listing about 33 sockets, and encoding/json spent ~60 µs
// decoding one such body, more than the rest of the handler together. What we write is
// compact, ASCII ids without escapes; the scanners take exactly that and hand anything
// else (another client's spacing, escapes, unknown keys, typing) to encoding/json,
// which stays the reference, so the contract's JSON is accepted in any valid form.

// appendDeliverBody appends {"message":MSG,"recipients":[...]} with msgJSON verbatim.
func appendDeliverBody(dst, msgJSON []byte, rs []chat.Recipient) []byte {
	dst = append(dst, `{"message":`...)
	dst = append(dst, msgJSON...)
	dst = append(dst, `,"recipients":[`...)
	for i, r := range rs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"user_id":`...)
		dst = appendString(dst, r.UserID)
		dst = append(dst, `,"conn_ids":`...)
		if r.ConnIDs == nil {
			dst = append(dst, "null"...)
		} else {
			dst = append(dst, '[')
			for j, id := range r.ConnIDs {
				if j > 0 {
					dst = append(dst, ',')
				}
				dst = appendString(dst, id)
			}
			dst = append(dst, ']')
		}
		dst = append(dst, '}')
	}
	return append(dst, "]}"...)
}

// appendAnswer appends {"results":[{"user_id":..,"conn_id":..,"status":..},...]}.
func appendAnswer(dst []byte, res []chat.DeliveryResult) []byte {
	dst = append(dst, `{"results":[`...)
	for i, r := range res {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"user_id":`...)
		dst = appendString(dst, r.UserID)
		dst = append(dst, `,"conn_id":`...)
		dst = appendString(dst, r.ConnID)
		dst = append(dst, `,"status":`...)
		dst = appendString(dst, r.Status)
		dst = append(dst, '}')
	}
	return append(dst, "]}"...)
}

// appendString appends s as a JSON string: plain ASCII as is, anything else the way
// encoding/json writes it.
func appendString(dst []byte, s string) []byte {
	if plainASCII(s) {
		dst = append(dst, '"')
		dst = append(dst, s...)
		return append(dst, '"')
	}
	b, _ := json.Marshal(s) // a string always marshals
	return append(dst, b...)
}

// plainASCII reports whether s needs no escaping in JSON (encoding/json also escapes
// <, > and &; leaving them is equally valid JSON, but we hand them over to keep the
// bytes identical).
func plainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// deliverRequest is the body of POST /internal/v1/deliver: a message's body is written
// by appendDeliverBody, a typing notice's by encoding/json.
type deliverRequest struct {
	Message    *chat.Message    `json:"message,omitempty"`
	Typing     *typingBody      `json:"typing,omitempty"`
	Recipients []chat.Recipient `json:"recipients"`
}

// decodeDeliverBody reads a deliver body: the scanner for what appendDeliverBody
// writes, encoding/json for everything else.
func decodeDeliverBody(data []byte) (deliverRequest, error) {
	if b, ok := scanDeliverBody(data); ok {
		return b, nil
	}
	var b deliverRequest
	err := json.Unmarshal(data, &b)
	return b, err
}

func scanDeliverBody(data []byte) (b deliverRequest, ok bool) {
	s := string(bytes.TrimRight(data, "\n")) // one copy; the ids below share it
	if !strings.HasPrefix(s, `{"message":{`) {
		return b, false
	}
	s = s[len(`{"message":`):]
	end, ok := objectEnd(s)
	if !ok {
		return b, false
	}
	var m chat.Message
	if err := json.Unmarshal([]byte(s[:end]), &m); err != nil {
		return b, false
	}
	s = s[end:]
	if !strings.HasPrefix(s, `,"recipients":[`) || !strings.HasSuffix(s, "]}") {
		return b, false
	}
	rs, ok := scanRecipients(s[len(`,"recipients":[`) : len(s)-2])
	if !ok {
		return b, false
	}
	return deliverRequest{Message: &m, Recipients: rs}, true
}

// objectEnd returns the index just past the JSON object at the start of s, honouring
// strings and escapes. It takes bytes too, so a batch is split without copying it.
func objectEnd[T string | []byte](s T) (int, bool) {
	depth, inStr := 0, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case inStr:
			switch c {
			case '\\':
				i++
			case '"':
				inStr = false
			}
		case c == '"':
			inStr = true
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			depth--
			if depth == 0 {
				return i + 1, true
			}
		}
	}
	return 0, false
}

// scanRecipients reads the inside of the recipients array as appendDeliverBody writes it.
func scanRecipients(s string) ([]chat.Recipient, bool) {
	rs := make([]chat.Recipient, 0, strings.Count(s, `"user_id"`))
	for len(s) > 0 {
		var r chat.Recipient
		if !strings.HasPrefix(s, `{"user_id":`) {
			return nil, false
		}
		id, rest, ok := jsonscan.String(s[len(`{"user_id":`):])
		if !ok {
			return nil, false
		}
		r.UserID = id
		switch {
		case strings.HasPrefix(rest, `,"conn_ids":null}`):
			rest = rest[len(`,"conn_ids":null}`):]
		case strings.HasPrefix(rest, `,"conn_ids":[`):
			rest = rest[len(`,"conn_ids":[`):]
			r.ConnIDs = []string{}
			for !strings.HasPrefix(rest, "]") {
				var cid string
				if cid, rest, ok = jsonscan.String(rest); !ok {
					return nil, false
				}
				r.ConnIDs = append(r.ConnIDs, cid)
				if strings.HasPrefix(rest, ",") {
					rest = rest[1:]
					if strings.HasPrefix(rest, "]") {
						return nil, false // trailing comma
					}
				} else if !strings.HasPrefix(rest, "]") {
					return nil, false
				}
			}
			if !strings.HasPrefix(rest, "]}") {
				return nil, false
			}
			rest = rest[2:]
		default:
			return nil, false
		}
		rs = append(rs, r)
		if len(rest) == 0 {
			break
		}
		if rest[0] != ',' || len(rest) == 1 {
			return nil, false
		}
		s = rest[1:]
	}
	return rs, true
}

// decodeAnswer reads a deliver answer's results.
func decodeAnswer(data []byte) ([]chat.DeliveryResult, error) {
	if res, ok := scanAnswer(string(bytes.TrimRight(data, "\n"))); ok {
		return res, nil
	}
	var a deliverAnswer
	err := json.Unmarshal(data, &a)
	return a.Results, err
}

func scanAnswer(s string) ([]chat.DeliveryResult, bool) {
	if !strings.HasPrefix(s, `{"results":[`) || !strings.HasSuffix(s, "]}") {
		return nil, false
	}
	s = s[len(`{"results":[`) : len(s)-2]
	res := make([]chat.DeliveryResult, 0, strings.Count(s, `"status"`))
	for len(s) > 0 {
		var r chat.DeliveryResult
		var ok bool
		if !strings.HasPrefix(s, `{"user_id":`) {
			return nil, false
		}
		if r.UserID, s, ok = jsonscan.String(s[len(`{"user_id":`):]); !ok || !strings.HasPrefix(s, `,"conn_id":`) {
			return nil, false
		}
		if r.ConnID, s, ok = jsonscan.String(s[len(`,"conn_id":`):]); !ok || !strings.HasPrefix(s, `,"status":`) {
			return nil, false
		}
		if r.Status, s, ok = jsonscan.String(s[len(`,"status":`):]); !ok || !strings.HasPrefix(s, "}") {
			return nil, false
		}
		s = s[1:]
		res = append(res, r)
		if len(s) == 0 {
			break
		}
		if s[0] != ',' || len(s) == 1 {
			return nil, false
		}
		s = s[1:]
	}
	return res, true
}

// readBody reads at most limit bytes of r into a buffer sized from the declared length
// (size, -1 when unknown): io.ReadAll grows from 512 bytes, and a batch's body or
// answer is tens of KB.
func readBody(r io.Reader, size, limit int64) ([]byte, error) {
	if size < 0 || size > limit {
		size = 0
	}
	buf := bytes.NewBuffer(make([]byte, 0, size+bytes.MinRead))
	_, err := buf.ReadFrom(io.LimitReader(r, limit))
	return buf.Bytes(), err
}
