package postgres_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/dbtest"
	"github.com/switchboard-chat/switchboard/pkg/postgres"
)

// TestStoreMessagesBatch hands store_messages and store_messages_bulk one crafted batch: two threads, a
// repeat within the batch, a repeat of a stored message, a non-member twice, and
// checks every answer and what the tables hold afterwards.
func TestStoreMessagesBatch(t *testing.T) {
	for _, bulk := range []bool{false, true} {
		t.Run(map[bool]string{false: "loop", true: "bulk"}[bulk], func(t *testing.T) { testStoreMessagesBatch(t, bulk) })
	}
}

func testStoreMessagesBatch(t *testing.T, bulk bool) {
	ctx := context.Background()
	db, err := postgres.OpenURL(ctx, dbtest.NewDatabaseURL(t), postgres.Config{DisableGroupCommit: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	user := func(name string) chat.User {
		u, err := db.CreateUser(ctx, name, "hash")
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	a, b, out := user("ann"), user("bob"), user("out")
	t1, err := db.CreateThread(ctx, chat.NewThread{Name: "t1", CreatedBy: a.ID, MemberIDs: []string{b.ID}})
	if err != nil {
		t.Fatal(err)
	}
	t2, err := db.CreateThread(ctx, chat.NewThread{Name: "t2", CreatedBy: b.ID})
	if err != nil {
		t.Fatal(err)
	}
	first, err := db.CreateMessage(ctx, chat.NewMessage{ThreadID: t1.ID, SenderID: a.ID, ClientMsgID: "old", Body: "0"})
	if err != nil || first.Message.Seq != 1 {
		t.Fatalf("seed message: %+v %v", first, err)
	}
	req := func(th chat.Thread, u chat.User, cmid string) chat.NewMessage {
		return chat.NewMessage{ThreadID: th.ID, SenderID: u.ID, ClientMsgID: cmid, Body: "body " + cmid}
	}
	batch := []chat.NewMessage{
		req(t1, a, "m1"),  // created, seq 2
		req(t2, b, "m2"),  // created, seq 1 of t2
		req(t1, b, "m3"),  // created, seq 3
		req(t1, a, "m1"),  // repeat within the batch
		req(t1, a, "old"), // repeat of a stored message
		req(t1, out, "x"), // not a member
		req(t1, out, "x"), // not a member, again
		req(t2, b, "m4"),  // created, seq 2 of t2
	}
	sts, errs, err := db.StoreBatch(ctx, batch, bulk)
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		created bool
		seq     int64
		err     bool
	}
	wants := []want{{true, 2, false}, {true, 1, false}, {true, 3, false}, {false, 2, false}, {false, 1, false}, {false, 0, true}, {false, 0, true}, {true, 2, false}}
	for i, w := range wants {
		st, err := sts[i], errs[i]
		if (err != nil) != w.err || st.Created != w.created || (!w.err && st.Message.Seq != w.seq) {
			t.Errorf("batch[%d] (%s): created=%v seq=%d err=%v; want created=%v seq=%d err=%v",
				i, batch[i].ClientMsgID, st.Created, st.Message.Seq, err, w.created, w.seq, w.err)
		}
		if w.err && chat.ErrorCode(err) != chat.ENotMember {
			t.Errorf("batch[%d]: error %v, want not_member", i, err)
		}
	}
	if m := slices.Sorted(slices.Values(sts[0].Members)); !slices.Equal(m, slices.Sorted(slices.Values([]string{a.ID, b.ID}))) {
		t.Errorf("t1 members %v", m)
	}
	if !slices.Equal(sts[7].Members, []string{b.ID}) {
		t.Errorf("t2's second message members %v", sts[7].Members)
	}
	for _, c := range []struct {
		th   chat.Thread
		last int64
	}{{t1, 3}, {t2, 2}} {
		msgs, _, err := db.MessagesAfter(ctx, c.th.ID, 0, 0, 50)
		if err != nil || int64(len(msgs)) != c.last || msgs[len(msgs)-1].Seq != c.last {
			t.Errorf("%s holds %d messages (%v), want %d", c.th.Name, len(msgs), err, c.last)
		}
		got, err := db.ThreadForMember(ctx, c.th.ID, b.ID)
		if err != nil || got.LastSeq != c.last {
			t.Errorf("%s last_seq %d (%v), want %d", c.th.Name, got.LastSeq, err, c.last)
		}
	}
	ms, err := db.Membership(ctx, t1.ID, b.ID)
	if err != nil || ms.ReadSeq != 0 {
		t.Errorf("bob's read mark in t1: %d (%v), want 0 (sending moves no read mark)", ms.ReadSeq, err)
	}
}

// A bulk batch finds repeats through the (sender_id, client_msg_id) index, never by
// scanning messages: on a fresh database, with no statistics yet, 0005's single plan
// hashed a scan of the whole table on every call, and that plan stuck as the table
// grew (PostgreSQL at 1.3 cores, stores taking seconds, at 2,500 msg/s).
func TestBulkBatchNeverScansMessages(t *testing.T) {
	ctx := context.Background()
	db, err := postgres.OpenURL(ctx, dbtest.NewDatabaseURL(t), postgres.Config{DisableGroupCommit: true, MaxOpenConns: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	a, err := db.CreateUser(ctx, "ann", "hash")
	if err != nil {
		t.Fatal(err)
	}
	th, err := db.CreateThread(ctx, chat.NewThread{Name: "t", CreatedBy: a.ID})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.CreateMessage(ctx, chat.NewMessage{ThreadID: th.ID, SenderID: a.ID, ClientMsgID: "old", Body: "0"}); err != nil {
		t.Fatal(err)
	}
	before, err := db.SeqScans(ctx, "messages")
	if err != nil {
		t.Fatal(err)
	}
	// More calls than PostgreSQL's five custom plans before it may settle on a generic one.
	for call := range 12 {
		batch := []chat.NewMessage{{ThreadID: th.ID, SenderID: a.ID, ClientMsgID: "old", Body: "again"}}
		for j := range 7 {
			batch = append(batch, chat.NewMessage{ThreadID: th.ID, SenderID: a.ID, ClientMsgID: fmt.Sprintf("c%d-%d", call, j), Body: "b"})
		}
		sts, errs, err := db.StoreBatch(ctx, batch, true)
		if err != nil {
			t.Fatal(err)
		}
		if errs[0] != nil || sts[0].Created || sts[0].Message.Seq != 1 || !sts[1].Created {
			t.Fatalf("call %d: the repeat answered %+v (%v), the first new one %+v", call, sts[0], errs[0], sts[1])
		}
	}
	after, err := db.SeqScans(ctx, "messages")
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Errorf("12 bulk batches scanned messages %d times; want every lookup through the index", after-before)
	}
}
