package httpapi

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/switchboard-chat/switchboard/pkg/chat"
)

// FuzzDecodeRequest feeds the JSON body decoder every kind of body and content type.
// It must never panic, and every refusal must be one of the contract's codes for a bad
// body, so a client always gets the error shape and nothing else.
func FuzzDecodeRequest(f *testing.F) {
	for _, seed := range []struct {
		ct   string
		body string
	}{
		{"application/json", `{"username":"alice","password":"correct horse"}`},
		{"application/json", `{"name":"t","members":["bob","carol"]}`},
		{"application/json; charset=utf-8", `{"client_msg_id":"c1","body":"hi"}`},
		{"application/json", `{"seq":3}`},
		{"application/json", `{"seq":"3"}`},
		{"application/json", `{"username":`},
		{"application/json", `[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]`},
		{"application/json", "{\"body\":\"a\xffb\"}"},
		{"application/json", `{} {}`},
		{"text/plain", `{"username":"alice"}`},
		{"", ``},
	} {
		f.Add(seed.ct, []byte(seed.body))
	}
	a := &API{cfg: Config{RequestBytes: 4096}}
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		targets := []func() any{
			func() any { return &credentials{} },
			func() any {
				return &struct {
					Name    string   `json:"name"`
					Members []string `json:"members"`
				}{}
			},
			func() any {
				return &struct {
					ClientMsgID string `json:"client_msg_id"`
					Body        string `json:"body"`
				}{}
			},
			func() any { return &struct{ Seq *int64 }{} },
		}
		for _, newTarget := range targets {
			w := httptest.NewRecorder()
			c, _ := gin.CreateTestContext(w)
			c.Request = httptest.NewRequest(http.MethodPost, "/api/v1/x", bytes.NewReader(body))
			c.Request.Header.Set("Content-Type", ct)
			err := a.decode(c, newTarget())
			if err == nil {
				continue
			}
			switch code := chat.ErrorCode(err); code {
			case chat.EInvalid, chat.ETooLarge, chat.EUnsupportedMedia:
			default:
				t.Fatalf("decode answered %q (%v) for Content-Type %q", code, err, ct)
			}
		}
	})
}
