package cluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/cluster"
)

// countingHub is a hub that accepts every delivery, for measuring the handler alone.
type countingHub struct{ n int }

func (h *countingHub) DeliverMessage(_ context.Context, _ *chat.Message, rs []chat.Recipient, _ string) []chat.DeliveryResult {
	out := make([]chat.DeliveryResult, 0, len(rs))
	for _, r := range rs {
		for _, id := range r.ConnIDs {
			h.n++
			out = append(out, chat.DeliveryResult{UserID: r.UserID, ConnID: id, Status: chat.StatusDelivered})
		}
	}
	return out
}
func (h *countingHub) DeliverTyping(string, string, []chat.Recipient, string) []chat.DeliveryResult {
	return nil
}
func (h *countingHub) DisconnectSession(string) int          { return 0 }
func (h *countingHub) DisconnectUser(string) int             { return 0 }
func (h *countingHub) Connections() []chat.Connection        { return nil }
func (h *countingHub) Repair(context.Context, string, int64) {}
func (h *countingHub) ExpireSessions(time.Time)              {}

// postSigned makes one signed deliver call to the handler, which must answer 200.
func postSigned(b *testing.B, h http.Handler, signer *cluster.Signer, body []byte) {
	b.Helper()
	req := httptest.NewRequest(http.MethodPost, cluster.PathDeliver, bytes.NewReader(body))
	signer.SignRequest(req, body)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusOK {
		b.Fatalf("status %d: %s", w.Code, w.Body)
	}
}

// BenchmarkDeliverHandler measures the receiving side of one host-to-host delivery:
// signature check, decode, the hub call for 33 recipients (a 100-member thread over
// three hosts) and the answer.
func BenchmarkDeliverHandler(b *testing.B) {
	hub := &countingHub{}
	signer := cluster.NewSigner("0123456789abcdef0123456789abcdef")
	h := cluster.NewInternalHandler(hub, signer, false, slog.New(slog.DiscardHandler))
	msg := chat.Message{ID: chat.NewID(), ThreadID: chat.NewID(), Seq: 42, SenderID: chat.NewID(), ClientMsgID: "c-1",
		Body: "a message of a typical length, some sixty bytes or so, ok?", CreatedAt: time.Now().UTC()}
	var rs []chat.Recipient
	for i := 0; i < 33; i++ {
		rs = append(rs, chat.Recipient{UserID: chat.NewID(), ConnIDs: []string{chat.NewID()}})
	}
	body, _ := json.Marshal(map[string]any{"message": msg, "recipients": rs})
	b.ReportAllocs()
	for b.Loop() {
		postSigned(b, h, signer, body)
	}
	b.ReportMetric(float64(hub.n)/float64(b.N), "deliveries/op")
}

// BenchmarkDeliverHandlerOneToOne compares the receiving side of 16 one-to-one
// messages (one recipient, one socket each) arriving as 16 calls and as one batch, the
// form concurrent sends to a host share under load.
func BenchmarkDeliverHandlerOneToOne(b *testing.B) {
	const n = 16
	signer := cluster.NewSigner("0123456789abcdef0123456789abcdef")
	var items []string
	for range n {
		msg := chat.Message{ID: chat.NewID(), ThreadID: chat.NewID(), Seq: 42, SenderID: chat.NewID(), ClientMsgID: "c-1",
			Body: "a message of a typical length, some sixty bytes or so, ok?", CreatedAt: time.Now().UTC()}
		body, _ := json.Marshal(map[string]any{"message": msg, "recipients": []chat.Recipient{{UserID: chat.NewID(), ConnIDs: []string{chat.NewID()}}}})
		items = append(items, string(body))
	}
	run := func(b *testing.B, bodies [][]byte) {
		hub := &countingHub{}
		h := cluster.NewInternalHandler(hub, signer, false, slog.New(slog.DiscardHandler))
		b.ReportAllocs()
		for b.Loop() {
			for _, body := range bodies {
				postSigned(b, h, signer, body)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(hub.n), "ns/delivery")
	}
	b.Run("calls=16", func(b *testing.B) {
		var bodies [][]byte
		for _, it := range items {
			bodies = append(bodies, []byte(it))
		}
		run(b, bodies)
	})
	b.Run("batch=16", func(b *testing.B) {
		run(b, [][]byte{[]byte(`{"batch":[` + strings.Join(items, ",") + `]}`)})
	})
}
