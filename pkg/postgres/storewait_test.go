package postgres_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/dbtest"
	"github.com/switchboard-chat/switchboard/pkg/postgres"
)

// A send that waits for its thread's lock must answer from what committed while it
// waited: a member added since is among the recipients, a sender removed since is
// refused, and a client_msg_id stored since is a repeat. In READ COMMITTED a statement
// sees only what committed before it started, so this holds only while every store
// path takes its locks in statements of their own, before the statements that read
// (store_message's check of the sender after the seq bump, for one). Merging a path's
// statements for speed can break it silently; this test is what says so. Checked on
// all three paths: a lone message (store_message), a small batch (store_messages) and
// a large one (store_messages_bulk).
func TestStoreSeesWhatCommittedWhileItWaited(t *testing.T) {
	for _, path := range []string{"single", "loop", "bulk"} {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			testStoreSeesWhatCommittedWhileItWaited(t, path)
		})
	}
}

func testStoreSeesWhatCommittedWhileItWaited(t *testing.T, path string) {
	ctx := context.Background()
	dbURL := dbtest.NewDatabaseURL(t)
	db, err := postgres.OpenURL(ctx, dbURL, postgres.Config{DisableGroupCommit: true, MaxOpenConns: 10}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	ann, bob, cat, dan := mustUser(t, db, "ann"), mustUser(t, db, "bob"), mustUser(t, db, "cat"), mustUser(t, db, "dan")
	th := mustThread(t, db, "t", ann, bob, cat)

	raw, tx := lockHolder(t, dbURL)
	// What AddMember, RemoveMember and another host's send of bob's "dup" do, all under
	// the thread row's lock, which the sends below then wait for.
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`UPDATE threads SET last_seq = last_seq + 1 WHERE id = $1`, []any{th.ID}},
		{`INSERT INTO messages (id, thread_id, seq, sender_id, client_msg_id, body, created_at) VALUES ($1, $2, 1, $3, 'dup', 'first', now())`,
			[]any{chat.NewID(), th.ID, bob.ID}},
		{`INSERT INTO thread_members (thread_id, user_id, acked_seq, read_seq, joined_at) VALUES ($1, $2, 1, 1, now())`, []any{th.ID, dan.ID}},
		{`DELETE FROM thread_members WHERE thread_id = $1 AND user_id = $2`, []any{th.ID, cat.ID}},
	} {
		if _, err := tx.ExecContext(ctx, q.sql, q.args...); err != nil {
			t.Fatal(err)
		}
	}

	batch := []chat.NewMessage{
		{ThreadID: th.ID, SenderID: ann.ID, ClientMsgID: "new", Body: "to the members of now"},
		{ThreadID: th.ID, SenderID: cat.ID, ClientMsgID: "c1", Body: "removed meanwhile"},
		{ThreadID: th.ID, SenderID: bob.ID, ClientMsgID: "dup", Body: "stored meanwhile"},
	}
	type answer struct {
		sts  []chat.Stored
		errs []error
		err  error
	}
	done := make(chan answer, 1)
	waiting := len(batch) // each lone send waits for the lock on its own connection
	if path == "single" {
		go func() {
			a := answer{sts: make([]chat.Stored, len(batch)), errs: make([]error, len(batch))}
			res := make(chan int, len(batch))
			for i := range batch {
				go func() {
					a.sts[i], a.errs[i] = db.CreateMessage(ctx, batch[i])
					res <- i
				}()
			}
			for range batch {
				<-res
			}
			done <- a
		}()
	} else {
		waiting = 1
		go func() {
			sts, errs, err := db.StoreBatch(ctx, batch, path == "bulk")
			done <- answer{sts, errs, err}
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		if err := raw.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n >= waiting {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d sends wait for the thread's lock", n, waiting)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	var a answer
	select {
	case a = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the sends did not return after the lock was released")
	}
	if a.err != nil {
		t.Fatal(a.err)
	}

	if st, err := a.sts[0], a.errs[0]; err != nil || !st.Created || st.Message.Seq != 2 {
		t.Errorf("ann's send: created=%v seq=%d err=%v; want created at seq 2", st.Created, st.Message.Seq, err)
	} else if got, want := slices.Sorted(slices.Values(st.Members)), slices.Sorted(slices.Values([]string{ann.ID, bob.ID, dan.ID})); !slices.Equal(got, want) {
		t.Errorf("ann's message goes to %v, want the members at commit %v (dan added, cat removed)", got, want)
	}
	if st, err := a.sts[1], a.errs[1]; chat.ErrorCode(err) != chat.ENotMember || st.Message.ID != "" {
		t.Errorf("removed cat's send: %+v, %v; want not_member", st, err)
	}
	if st, err := a.sts[2], a.errs[2]; err != nil || st.Created || st.Message.Seq != 1 || st.Message.Body != "first" {
		t.Errorf("bob's repeat: created=%v seq=%d body=%q err=%v; want the message stored meanwhile (seq 1)",
			st.Created, st.Message.Seq, st.Message.Body, err)
	}
	msgs := history(t, db, th.ID)
	if got := seqs(msgs); !slices.Equal(got, []int64{1, 2}) {
		t.Errorf("thread holds seqs %v, want [1 2]", got)
	}
	// bob's message stored meanwhile is unread for ann; her own is not.
	if seen, err := db.ThreadForMember(ctx, th.ID, ann.ID); err != nil || seen.Unread != 1 {
		t.Errorf("ann's unread %d (%v), want 1", seen.Unread, err)
	}
}
