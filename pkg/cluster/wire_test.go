package cluster

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/pkg/chat"
)

func wireMessage() chat.Message {
	return chat.Message{ID: chat.NewID(), ThreadID: chat.NewID(), Seq: 7, SenderID: chat.NewID(), ClientMsgID: "c-1",
		Body: "quote \" back\\slash <b>&amp; ünïcode \u2028 \x01", CreatedAt: time.Date(2026, 11, 26, 18, 0, 0, 123456789, time.UTC)}
}

// TestDeliverBodyWire: what appendDeliverBody writes is valid JSON that encoding/json
// reads as the same body, and the scanner reads it the same way.
func TestDeliverBodyWire(t *testing.T) {
	m := wireMessage()
	msgJSON, _ := json.Marshal(&m)
	for _, rs := range [][]chat.Recipient{
		{},
		{{UserID: chat.NewID()}},
		{{UserID: chat.NewID(), ConnIDs: []string{chat.NewID(), chat.NewID()}}, {UserID: "odd\"id", ConnIDs: []string{}}},
	} {
		body := appendDeliverBody(nil, msgJSON, rs)
		var want deliverRequest
		if err := json.Unmarshal(body, &want); err != nil {
			t.Fatalf("not JSON: %v: %s", err, body)
		}
		got, err := decodeDeliverBody(body)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("decode differs from encoding/json:\n got %+v\nwant %+v", got, want)
		}
		if got.Message.Body != m.Body || !got.Message.CreatedAt.Equal(m.CreatedAt) {
			t.Errorf("message changed on the way: %+v", got.Message)
		}
	}
}

// TestDeliverBodyFallback: bodies the scanner does not take (spacing, typing, key
// order, escapes) still decode, through encoding/json; invalid ones fail.
func TestDeliverBodyFallback(t *testing.T) {
	ok := []string{
		`{ "message": {"id":"a","thread_id":"t","seq":1}, "recipients": [ {"user_id":"u","conn_ids":["c"]} ] }`,
		`{"recipients":[{"user_id":"u","conn_ids":null}],"message":{"id":"a","seq":2}}`,
		`{"typing":{"thread_id":"t","user_id":"u"},"recipients":[{"user_id":"u"}]}`,
		`{"message":{"id":"a"},"recipients":[{"user_id":"\u0075","conn_ids":["c"]}]}`,
		`{"message":{"id":"a"},"recipients":[{"conn_ids":["c"],"user_id":"u"}]}` + "\n",
	}
	for _, s := range ok {
		var want deliverRequest
		if err := json.Unmarshal([]byte(s), &want); err != nil {
			t.Fatalf("bad case %s: %v", s, err)
		}
		got, err := decodeDeliverBody([]byte(s))
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %+v, %v; want %+v", s, got, err, want)
		}
	}
	for _, s := range []string{
		`{"message":{"id":"a"},"recipients":[{"user_id":"u","conn_ids":["c"]},]}`,
		`{"message":{"id":"a"},"recipients":[{"user_id":"u","conn_ids":["c",]}]}`,
		`{"message":{"id":"a"},"recipients":[{"user_id":"u","conn_ids":["c"]}]} trailing`,
		`{"message":{"id":"a","seq":"x"},"recipients":[]}`,
		`{"message":{"id":"a"`,
	} {
		if _, err := decodeDeliverBody([]byte(s)); err == nil {
			t.Errorf("%s: accepted", s)
		}
	}
}

// TestAnswerWire: the answer round-trips, and foreign spellings decode too.
func TestAnswerWire(t *testing.T) {
	res := []chat.DeliveryResult{
		{UserID: chat.NewID(), ConnID: chat.NewID(), Status: chat.StatusDelivered},
		{UserID: "u<2>", ConnID: "c\"2", Status: chat.StatusNotConnected},
	}
	body := appendAnswer(nil, res)
	var a deliverAnswer
	if err := json.Unmarshal(body, &a); err != nil || !reflect.DeepEqual(a.Results, res) {
		t.Fatalf("encoding/json reads %s as %+v, %v", body, a.Results, err)
	}
	got, err := decodeAnswer(body)
	if err != nil || !reflect.DeepEqual(got, res) {
		t.Fatalf("decodeAnswer: %+v, %v", got, err)
	}
	empty, err := decodeAnswer(appendAnswer(nil, nil))
	if err != nil || len(empty) != 0 {
		t.Fatalf("empty answer: %+v, %v", empty, err)
	}
	spaced, err := decodeAnswer([]byte(`{ "results": [ {"status":"delivered","conn_id":"c","user_id":"u"} ] }` + "\n"))
	if err != nil || len(spaced) != 1 || spaced[0].ConnID != "c" {
		t.Fatalf("spaced answer: %+v, %v", spaced, err)
	}
	if _, err := decodeAnswer([]byte(`{"results":[{"user_id":"u","conn_id":"c","status":"delivered"},]}`)); err == nil {
		t.Fatal("trailing comma accepted")
	}
}

// FuzzDecodeDeliverBody: the scanner never accepts what encoding/json refuses, and
// never reads a body differently.
func FuzzDecodeDeliverBody(f *testing.F) {
	m := wireMessage()
	msgJSON, _ := json.Marshal(&m)
	f.Add(string(appendDeliverBody(nil, msgJSON, []chat.Recipient{{UserID: "u", ConnIDs: []string{"a", "b"}}, {UserID: "v"}})))
	f.Add(`{"message":{"id":"a"},"recipients":[{"user_id":"u","conn_ids":[]}]}`)
	f.Add(`{"results":[{"user_id":"u","conn_id":"c","status":"delivered"}]}`)
	f.Add(`{"batch":[{"results":[]},{"message":{"id":"a"},"recipients":[]}]}`)
	f.Fuzz(func(t *testing.T, s string) {
		if items, ok := scanBatch([]byte(s)); ok {
			var want struct {
				Batch []json.RawMessage `json:"batch"`
			}
			// The scanner only delimits: where encoding/json reads the batch, the two
			// must find the same elements.
			if err := json.Unmarshal([]byte(s), &want); err == nil {
				if len(items) != len(want.Batch) {
					t.Fatalf("%q: scanner %d elements, encoding/json %d", s, len(items), len(want.Batch))
				}
				for i := range items {
					if string(items[i]) != string(want.Batch[i]) {
						t.Fatalf("%q: element %d scanned %q, encoding/json %q", s, i, items[i], want.Batch[i])
					}
				}
			}
		}
		if got, ok := scanDeliverBody([]byte(s)); ok {
			var want deliverRequest
			if err := json.Unmarshal([]byte(s), &want); err != nil {
				t.Fatalf("scanner took %q, encoding/json refused it: %v", s, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%q: scanner %+v, encoding/json %+v", s, got, want)
			}
		}
		if got, ok := scanAnswer(s); ok {
			var want deliverAnswer
			if err := json.Unmarshal([]byte(s), &want); err != nil {
				t.Fatalf("answer scanner took %q, encoding/json refused it: %v", s, err)
			}
			if len(got) != len(want.Results) || (len(got) > 0 && !reflect.DeepEqual(got, want.Results)) {
				t.Fatalf("%q: scanner %+v, encoding/json %+v", s, got, want.Results)
			}
		}
	})
}
