package postgres_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/dbtest"
	"github.com/switchboard-chat/switchboard/pkg/postgres"
)

// TestGroupCommitMixedBatch floods the committers with concurrent sends to several
// threads, including repeats of one client_msg_id and senders who are not members,
// and checks what each sender was told against what the table holds: every thread's
// seqs are 1..n without gap, a repeat answers the first message, a non-member gets
// not_member and stores nothing.
func TestGroupCommitMixedBatch(t *testing.T) {
	t.Parallel()
	db := openPostgres(t)
	ctx := context.Background()
	var members []chat.User
	for i := 0; i < 6; i++ {
		members = append(members, mustUser(t, db, fmt.Sprintf("gc%d", i)))
	}
	outsider := mustUser(t, db, "gcout")
	var memberIDs []string
	for _, m := range members {
		memberIDs = append(memberIDs, m.ID)
	}
	slices.Sort(memberIDs)
	var threads []chat.Thread
	for i := 0; i < 4; i++ {
		threads = append(threads, mustThread(t, db, "t"+strconv.Itoa(i), members[0], members[1:]...))
	}
	type outcome struct {
		st  chat.Stored
		err error
	}
	var (
		mu   sync.Mutex
		outs = map[string][]outcome{} // client_msg_id -> every answer
		wg   sync.WaitGroup
	)
	send := func(th chat.Thread, u chat.User, cmid string) {
		defer wg.Done()
		st, err := db.CreateMessage(ctx, chat.NewMessage{ThreadID: th.ID, SenderID: u.ID, ClientMsgID: cmid, Body: "b " + cmid})
		mu.Lock()
		outs[u.ID+"/"+cmid] = append(outs[u.ID+"/"+cmid], outcome{st, err})
		mu.Unlock()
	}
	for i := 0; i < 400; i++ {
		th := threads[i%len(threads)]
		u := members[i%len(members)]
		cmid := "m" + strconv.Itoa(i)
		wg.Add(1)
		go send(th, u, cmid)
		if i%10 == 0 { // a concurrent repeat
			wg.Add(1)
			go send(th, u, cmid)
		}
		if i%25 == 0 {
			wg.Add(1)
			go send(th, outsider, "x"+cmid)
		}
	}
	wg.Wait()

	// Every send went through the group commit, and concurrent ones shared
	// transactions: that sharing is what /metrics shows as messages over batches.
	if batches, msgs := db.CommitStats(); msgs < 456 || batches < 1 || batches >= msgs {
		t.Fatalf("commit stats: %d messages in %d transactions, want at least 456 in fewer transactions", msgs, batches)
	}

	created := 0
	for key, os := range outs {
		var id string
		for _, o := range os {
			if o.err != nil {
				if chat.ErrorCode(o.err) != chat.ENotMember || key[:len(outsider.ID)] != outsider.ID {
					t.Fatalf("%s: unexpected error %v", key, o.err)
				}
				continue
			}
			if o.st.Created {
				created++
			}
			// Each answer carries the thread's members (in a batch, one list read
			// once per thread is shared by its messages): the deliverer routes by it.
			if got := slices.Sorted(slices.Values(o.st.Members)); !slices.Equal(got, memberIDs) {
				t.Fatalf("%s: answered members %v, want %v", key, got, memberIDs)
			}
			if id == "" {
				id = o.st.Message.ID
			} else if id != o.st.Message.ID {
				t.Fatalf("%s: repeat answered another message (%s vs %s)", key, id, o.st.Message.ID)
			}
		}
	}
	if created != 400 {
		t.Fatalf("created %d messages, want 400 (one per client_msg_id)", created)
	}
	total := 0
	for _, th := range threads {
		msgs, more, err := db.MessagesAfter(ctx, th.ID, 0, 0, 200)
		if err != nil || more {
			t.Fatalf("read back: %v more=%v", err, more)
		}
		for i, m := range msgs {
			if m.Seq != int64(i+1) {
				t.Fatalf("thread %s: seq %d at position %d: gap or duplicate", th.Name, m.Seq, i)
			}
			if m.SenderID == outsider.ID {
				t.Fatalf("a non-member's message was stored")
			}
		}
		got, err := db.ThreadForMember(ctx, th.ID, members[0].ID)
		if err != nil || got.LastSeq != int64(len(msgs)) {
			t.Fatalf("thread last_seq %d, messages %d (%v)", got.LastSeq, len(msgs), err)
		}
		total += len(msgs)
	}
	if total != 400 {
		t.Fatalf("table holds %d messages, want 400", total)
	}
}

// BenchmarkGroupCommit compares many concurrent senders (one host with many sockets)
// with and without group commit.
func BenchmarkGroupCommit(b *testing.B) {
	for _, mode := range []struct {
		name string
		cfg  postgres.Config
	}{{"grouped", postgres.Config{}}, {"per-message", postgres.Config{DisableGroupCommit: true}}} {
		b.Run(mode.name, func(b *testing.B) {
			db, err := postgres.OpenURL(context.Background(), dbtest.NewDatabaseURL(b), mode.cfg, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			ctx := context.Background()
			type seat struct {
				th chat.Thread
				me chat.User
			}
			seats := make([]seat, 64)
			for i := range seats {
				a := mustUser(b, db, fmt.Sprintf("a%d", i))
				o := mustUser(b, db, fmt.Sprintf("o%d", i))
				seats[i] = seat{mustThread(b, db, "t", a, o), a}
			}
			var next, n atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				s := seats[(next.Add(1)-1)%int64(len(seats))]
				for pb.Next() {
					if _, err := db.CreateMessage(ctx, chat.NewMessage{ThreadID: s.th.ID, SenderID: s.me.ID,
						ClientMsgID: strconv.FormatInt(n.Add(1), 10), Body: "hello there"}); err != nil {
						b.Error(err)
					}
				}
			})
		})
	}
}

// TestGroupCommitAndAcksDoNotDeadlock runs batched sends against batched acks of the
// same memberships in the opposite order. When sends moved their senders' read marks
// (before migration 0010) and before both took their row locks in one order,
// PostgreSQL broke deadlocks between them and the sends in the aborted batch failed
// as unavailable; it stays as the guard for any lock a send takes again.
func TestGroupCommitAndAcksDoNotDeadlock(t *testing.T) {
	t.Parallel()
	db := openPostgres(t)
	ctx := context.Background()
	var users []chat.User
	for i := 0; i < 8; i++ {
		users = append(users, mustUser(t, db, fmt.Sprintf("dl%d", i)))
	}
	var threads []chat.Thread
	for i := 0; i < 4; i++ {
		threads = append(threads, mustThread(t, db, "t", users[0], users[1:]...))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	var seq atomic.Int64
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				u := users[(w+i)%len(users)]
				th := threads[(w*7+i)%len(threads)]
				_, err := db.CreateMessage(ctx, chat.NewMessage{ThreadID: th.ID, SenderID: u.ID, ClientMsgID: strconv.FormatInt(seq.Add(1), 10), Body: "x"})
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				var acks []chat.AckUpdate
				for j := len(users) - 1; j >= 0; j-- {
					for k := len(threads) - 1; k >= 0; k-- {
						acks = append(acks, chat.AckUpdate{ThreadID: threads[k].ID, UserID: users[j].ID, Seq: int64(i + 1)})
					}
				}
				if err := db.Ack(ctx, acks); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("send or ack failed: %v", err)
	}
}
