package postgres_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/postgres"
)

// history returns every message of a thread in seq order.
func history(t *testing.T, db *postgres.DB, threadID string) []chat.Message {
	t.Helper()
	msgs, more, err := db.MessagesAfter(context.Background(), threadID, 0, 0, chat.MaxPage)
	if err != nil || more {
		t.Fatalf("history: more %v, %v", more, err)
	}
	return msgs
}

func seqs(msgs []chat.Message) []int64 {
	out := []int64{}
	for _, m := range msgs {
		out = append(out, m.Seq)
	}
	return out
}

func seqRange(from, to int64) []int64 {
	out := []int64{}
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

func TestCreateMessage(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *postgres.DB) {
		ctx := context.Background()
		ann, bob := mustUser(t, db, "ann"), mustUser(t, db, "bob")
		th := mustThread(t, db, "t", ann, bob)

		st, err := db.CreateMessage(ctx, chat.NewMessage{ThreadID: th.ID, SenderID: ann.ID, ClientMsgID: "c-1", Body: "héllo, wörld ✓"})
		if err != nil {
			t.Fatal(err)
		}
		m := st.Message
		if !st.Created || !chat.ValidID(m.ID) || m.ThreadID != th.ID || m.Seq != 1 || m.SenderID != ann.ID ||
			m.ClientMsgID != "c-1" || m.Body != "héllo, wörld ✓" || m.CreatedAt.Location() != time.UTC || !m.CreatedAt.After(th.CreatedAt) {
			t.Fatalf("stored = %+v", st)
		}
		members := slices.Clone(st.Members)
		slices.Sort(members)
		want := []string{ann.ID, bob.ID}
		slices.Sort(want)
		if !slices.Equal(members, want) {
			t.Fatalf("Members = %v, want %v", st.Members, want)
		}
		// What was returned is what is stored, to the microsecond.
		if got := history(t, db, th.ID); len(got) != 1 || got[0] != m {
			t.Fatalf("stored message = %+v, want %+v", got, m)
		}
		// Storing moves no one's marks: the sender's read mark is theirs to move (their
		// unread count leaves their own messages out by itself), and acked_seq waits
		// for their devices.
		if got := mustMembership(t, db, th.ID, ann); got.ReadSeq != 0 || got.AckedSeq != 0 || got.LastSeq != 1 {
			t.Fatalf("sender's membership = %+v", got)
		}
		if got := mustMembership(t, db, th.ID, bob); got.ReadSeq != 0 || got.AckedSeq != 0 {
			t.Fatalf("recipient's membership = %+v", got)
		}
	})
}

// TestCreateMessageConcurrentSenders: senders racing on one thread get seq 1..n, each
// exactly once.
func TestCreateMessageConcurrentSenders(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *postgres.DB) {
		ctx := context.Background()
		const n = 50
		owner := mustUser(t, db, "owner")
		var senders []chat.User
		for i := range n {
			senders = append(senders, mustUser(t, db, fmt.Sprintf("sender%02d", i)))
		}
		th := mustThread(t, db, "busy", owner, senders...)

		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			got   = make(chan chat.Message, n)
		)
		for _, s := range senders {
			wg.Go(func() {
				<-start
				st, err := db.CreateMessage(ctx, chat.NewMessage{ThreadID: th.ID, SenderID: s.ID, ClientMsgID: "only", Body: s.Username})
				if err != nil || !st.Created {
					t.Errorf("%s: created %v, %v", s.Username, st.Created, err)
					return
				}
				got <- st.Message
			})
		}
		close(start)
		wg.Wait()
		close(got)

		var returned []int64
		for m := range got {
			returned = append(returned, m.Seq)
			// Sending moved no read mark.
			if r := mustMembership(t, db, th.ID, chat.User{ID: m.SenderID}).ReadSeq; r != 0 {
				t.Errorf("%s: read mark %d after sending, want 0", m.Body, r)
			}
		}
		slices.Sort(returned)
		if !slices.Equal(returned, seqRange(1, n)) {
			t.Fatalf("returned seqs = %v, want 1..%d", returned, n)
		}
		if stored := seqs(history(t, db, th.ID)); !slices.Equal(stored, seqRange(1, n)) {
			t.Fatalf("stored seqs = %v, want 1..%d", stored, n)
		}
		if m := mustMembership(t, db, th.ID, owner); m.LastSeq != n {
			t.Fatalf("last seq = %d, want %d", m.LastSeq, n)
		}
	})
}

func TestCreateMessageIdempotent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *postgres.DB) {
		ctx := context.Background()
		ann, bob := mustUser(t, db, "ann"), mustUser(t, db, "bob")
		t1 := mustThread(t, db, "t1", ann, bob)
		t2 := mustThread(t, db, "t2", ann, bob)
		first, err := db.CreateMessage(ctx, chat.NewMessage{ThreadID: t1.ID, SenderID: ann.ID, ClientMsgID: "dup", Body: "first"})
		if err != nil || !first.Created {
			t.Fatalf("first send: %+v, %v", first, err)
		}

		repeats := []struct {
			name string
			m    chat.NewMessage
		}{
			{"same thread, same body", chat.NewMessage{ThreadID: t1.ID, SenderID: ann.ID, ClientMsgID: "dup", Body: "first"}},
			{"same thread, other body", chat.NewMessage{ThreadID: t1.ID, SenderID: ann.ID, ClientMsgID: "dup", Body: "second"}},
			// client_msg_id is unique per sender, not per thread.
			{"other thread", chat.NewMessage{ThreadID: t2.ID, SenderID: ann.ID, ClientMsgID: "dup", Body: "third"}},
		}
		for _, tc := range repeats {
			t.Run("repeat/"+tc.name, func(t *testing.T) {
				st, err := db.CreateMessage(ctx, tc.m)
				if err != nil {
					t.Fatal(err)
				}
				if st.Created || st.Message != first.Message {
					t.Fatalf("repeat = created %v, %+v; want the first message %+v", st.Created, st.Message, first.Message)
				}
				if len(st.Members) != 2 {
					t.Fatalf("repeat members = %v", st.Members)
				}
				if got := seqs(history(t, db, t1.ID)); !slices.Equal(got, []int64{1}) {
					t.Fatalf("t1 seqs = %v, want [1]", got)
				}
				if got := mustMembership(t, db, t2.ID, ann); got.LastSeq != 0 {
					t.Fatalf("t2 last seq = %d, want 0", got.LastSeq)
				}
			})
		}

		t.Run("another sender may use the same id", func(t *testing.T) {
			st, err := db.CreateMessage(ctx, chat.NewMessage{ThreadID: t1.ID, SenderID: bob.ID, ClientMsgID: "dup", Body: "bob's"})
			if err != nil || !st.Created || st.Message.Seq != 2 {
				t.Fatalf("bob's send = %+v, %v; want created with seq 2", st, err)
			}
		})

		t.Run("concurrent repeats store one message", func(t *testing.T) {
			const n = 10
			var (
				wg    sync.WaitGroup
				start = make(chan struct{})
				res   = make(chan chat.Stored, n)
			)
			for range n {
				wg.Go(func() {
					<-start
					st, err := db.CreateMessage(ctx, chat.NewMessage{ThreadID: t2.ID, SenderID: bob.ID, ClientMsgID: "retry-storm", Body: "once"})
					if err != nil {
						t.Errorf("send: %v", err)
						return
					}
					res <- st
				})
			}
			close(start)
			wg.Wait()
			close(res)
			created, ids := 0, map[string]bool{}
			for st := range res {
				if st.Created {
					created++
				}
				ids[st.Message.ID] = true
			}
			if created != 1 || len(ids) != 1 {
				t.Fatalf("%d created, %d distinct messages; want 1 and 1", created, len(ids))
			}
			if got := seqs(history(t, db, t2.ID)); !slices.Equal(got, []int64{1}) {
				t.Fatalf("t2 seqs = %v, want [1]: no seq lost to the repeats", got)
			}
			// The next message follows without a gap.
			if m := mustSend(t, db, t2.ID, ann, "next"); m.Seq != 2 {
				t.Fatalf("next seq = %d, want 2", m.Seq)
			}
		})
	})
}

func TestCreateMessageNotMember(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *postgres.DB) {
		ctx := context.Background()
		ann, bob, cat := mustUser(t, db, "ann"), mustUser(t, db, "bob"), mustUser(t, db, "cat")
		th := mustThread(t, db, "t", ann, bob, cat)
		if err := db.RemoveMember(ctx, th.ID, cat.ID); err != nil {
			t.Fatal(err)
		}
		outsider := mustUser(t, db, "eve")
		cases := []struct {
			name     string
			threadID string
			sender   string
		}{
			{"never a member", th.ID, outsider.ID},
			{"removed member", th.ID, cat.ID},
			{"no such thread", chat.NewID(), ann.ID},
			{"no such user", th.ID, chat.NewID()},
			{"malformed thread id", "nope", ann.ID},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				st, err := db.CreateMessage(ctx, chat.NewMessage{ThreadID: tc.threadID, SenderID: tc.sender, ClientMsgID: "x", Body: "let me in"})
				wantCode(t, err, chat.ENotMember)
				if st.Message.ID != "" || st.Members != nil {
					t.Fatalf("returned %+v with the error", st)
				}
				if got := history(t, db, th.ID); len(got) != 0 {
					t.Fatalf("stored %v", got)
				}
				if m := mustMembership(t, db, th.ID, ann); m.LastSeq != 0 {
					t.Fatalf("last seq moved to %d", m.LastSeq)
				}
			})
		}
		// The refused client_msg_id was not consumed.
		st, err := db.CreateMessage(ctx, chat.NewMessage{ThreadID: th.ID, SenderID: ann.ID, ClientMsgID: "x", Body: "ok"})
		if err != nil || !st.Created || st.Message.Seq != 1 {
			t.Fatalf("member's send = %+v, %v", st, err)
		}
	})
}

func TestMessagesPaging(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *postgres.DB) {
		ctx := context.Background()
		ann, bob := mustUser(t, db, "ann"), mustUser(t, db, "bob")
		th := mustThread(t, db, "t", ann, bob)
		other := mustThread(t, db, "other", ann, bob)
		for i := range 7 {
			mustSend(t, db, th.ID, ann, fmt.Sprint("m", i+1))
			mustSend(t, db, other.ID, bob, "noise") // another thread's messages never show
		}

		after := []struct {
			afterSeq, upTo int64
			limit          int
			want           []int64
			more           bool
		}{
			{0, 0, 3, seqRange(1, 3), true},
			{3, 0, 3, seqRange(4, 6), true},
			{6, 0, 3, []int64{7}, false},
			{4, 0, 3, seqRange(5, 7), false}, // exactly the rest: nothing more
			{7, 0, 3, []int64{}, false},
			{100, 0, 3, []int64{}, false},
			{0, 4, 3, seqRange(1, 3), true},
			{3, 4, 3, []int64{4}, false}, // bounded by upTo
			{0, 4, 10, seqRange(1, 4), false},
			{2, 3, 1, []int64{3}, false},
		}
		for _, tc := range after {
			t.Run(fmt.Sprintf("after %d upTo %d limit %d", tc.afterSeq, tc.upTo, tc.limit), func(t *testing.T) {
				msgs, more, err := db.MessagesAfter(ctx, th.ID, tc.afterSeq, tc.upTo, tc.limit)
				if err != nil {
					t.Fatal(err)
				}
				if got := seqs(msgs); !slices.Equal(got, tc.want) || more != tc.more {
					t.Fatalf("got %v more %v, want %v more %v", got, more, tc.want, tc.more)
				}
				for _, m := range msgs {
					if m.ThreadID != th.ID || m.Body != fmt.Sprint("m", m.Seq) {
						t.Fatalf("message %+v", m)
					}
				}
			})
		}

		before := []struct {
			beforeSeq int64
			limit     int
			want      []int64
			more      bool
		}{
			{8, 3, seqRange(5, 7), true},
			{100, 3, seqRange(5, 7), true},
			{5, 3, seqRange(2, 4), true},
			{4, 3, seqRange(1, 3), false}, // exactly the rest: nothing older
			{2, 3, []int64{1}, false},
			{1, 3, []int64{}, false},
			{8, 7, seqRange(1, 7), false},
		}
		for _, tc := range before {
			t.Run(fmt.Sprintf("before %d limit %d", tc.beforeSeq, tc.limit), func(t *testing.T) {
				msgs, more, err := db.MessagesBefore(ctx, th.ID, tc.beforeSeq, tc.limit)
				if err != nil {
					t.Fatal(err)
				}
				if got := seqs(msgs); !slices.Equal(got, tc.want) || more != tc.more {
					t.Fatalf("got %v more %v, want %v more %v", got, more, tc.want, tc.more)
				}
			})
		}

		t.Run("bad limit and unknown thread", func(t *testing.T) {
			_, _, err := db.MessagesAfter(ctx, th.ID, 0, 0, 0)
			wantCode(t, err, chat.EInvalid)
			_, _, err = db.MessagesBefore(ctx, th.ID, 5, 0)
			wantCode(t, err, chat.EInvalid)
			for _, id := range []string{chat.NewID(), "junk"} {
				msgs, more, err := db.MessagesAfter(ctx, id, 0, 0, 10)
				if err != nil || more || msgs == nil || len(msgs) != 0 {
					t.Fatalf("MessagesAfter(%q) = %v, %v, %v; want an empty page", id, msgs, more, err)
				}
			}
		})
	})
}
