package ws_test

import (
	"slices"
	"testing"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/ws"
)

// A typing hand-off answers like a message's (contract section 5): each listed conn id
// is delivered or not_connected, so the sender's host drops the stale presence entry.
// It answered nothing for a conn id it did not have.
func TestDeliverTypingAnswersNotConnected(t *testing.T) {
	thread := chat.NewID()
	hub, url := startHub(t, quietStore{thread: thread}, ws.HubConfig{}, 0)
	user := chat.NewID()
	c, frames := dial(t, url, user)
	connID, _ := frames[0]["conn_id"].(string)
	if connID == "" {
		t.Fatalf("no conn id in %v", frames)
	}
	gone := chat.NewID()
	res := hub.DeliverTyping(thread, "someone", []chat.Recipient{{UserID: user, ConnIDs: []string{connID, gone}}}, "")
	want := []chat.DeliveryResult{
		{UserID: user, ConnID: connID, Status: chat.StatusDelivered},
		{UserID: user, ConnID: gone, Status: chat.StatusNotConnected},
	}
	if !slices.Equal(res, want) {
		t.Fatalf("results %+v, want %+v", res, want)
	}
	if f := readFrame(t, c); f["type"] != "typing" || f["thread_id"] != thread || f["user_id"] != "someone" {
		t.Fatalf("socket got %v, want the typing notice", f)
	}
	// Without conn ids: every socket of the user, delivered.
	if res := hub.DeliverTyping(thread, "someone", []chat.Recipient{{UserID: user}}, ""); len(res) != 1 || res[0].Status != chat.StatusDelivered {
		t.Fatalf("results %+v, want one delivered", res)
	}
}
