package postgres_test

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/postgres"
)

// listing is what a user's thread list shows of one thread.
type listing struct {
	Name    string
	LastSeq int64
	Unread  int64
}

func listThreads(t *testing.T, db *postgres.DB, u chat.User) []listing {
	t.Helper()
	ts, err := db.ThreadsForUser(context.Background(), u.ID)
	if err != nil {
		t.Fatalf("threads of %s: %v", u.Username, err)
	}
	out := []listing{}
	for _, th := range ts {
		out = append(out, listing{th.Name, th.LastSeq, th.Unread})
	}
	return out
}

func TestCreateThread(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *postgres.DB) {
		ctx := context.Background()
		ann, bob, cat := mustUser(t, db, "ann"), mustUser(t, db, "bob"), mustUser(t, db, "cat")

		t.Run("creator joins, repeats count once", func(t *testing.T) {
			// The creator is not listed and cat is listed twice, before bob.
			th, err := db.CreateThread(ctx, chat.NewThread{Name: "plans", CreatedBy: ann.ID, MemberIDs: []string{cat.ID, bob.ID, cat.ID}})
			if err != nil {
				t.Fatal(err)
			}
			if !chat.ValidID(th.ID) || th.Name != "plans" || th.CreatedBy != ann.ID || th.LastSeq != 0 || th.Unread != 0 {
				t.Fatalf("created thread = %+v", th)
			}
			// Those who joined together: the creator first, then by username.
			if got, want := th.Members, []chat.User{ann, bob, cat}; !slices.Equal(got, want) {
				t.Fatalf("members = %v, want %v", usernames(got), usernames(want))
			}
			if th.CreatedAt.IsZero() || th.CreatedAt.Location() != time.UTC || !th.LastActivityAt.Equal(th.CreatedAt) {
				t.Fatalf("created_at %v, last_activity_at %v: want the same UTC time", th.CreatedAt, th.LastActivityAt)
			}
			got, err := db.ThreadForMember(ctx, th.ID, cat.ID)
			if err != nil || !reflect.DeepEqual(got, th) {
				t.Fatalf("thread as stored = %+v, %v; want %+v", got, err, th)
			}
		})

		t.Run("unknown member creates nothing", func(t *testing.T) {
			before := listThreads(t, db, ann)
			_, err := db.CreateThread(ctx, chat.NewThread{Name: "ghosts", CreatedBy: ann.ID, MemberIDs: []string{bob.ID, chat.NewID()}})
			wantCode(t, err, chat.EInvalid)
			if after := listThreads(t, db, ann); !slices.Equal(after, before) {
				t.Fatalf("threads after a failed create = %v, want %v", after, before)
			}
			_, err = db.CreateThread(ctx, chat.NewThread{Name: "bad", CreatedBy: ann.ID, MemberIDs: []string{"nope"}})
			wantCode(t, err, chat.EInvalid)
		})
	})
}

func TestThreadsForUser(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *postgres.DB) {
		ctx := context.Background()
		ann, bob, cat, dan := mustUser(t, db, "ann"), mustUser(t, db, "bob"), mustUser(t, db, "cat"), mustUser(t, db, "dan")
		t1 := mustThread(t, db, "t1", ann, bob)
		t2 := mustThread(t, db, "t2", ann, cat)
		t3 := mustThread(t, db, "t3", bob, cat)

		type want map[string][]listing // username -> their list
		steps := []struct {
			name string
			do   func(t *testing.T)
			want want
		}{
			{"created: newest first", func(*testing.T) {}, want{
				"ann": {{"t2", 0, 0}, {"t1", 0, 0}},
				"bob": {{"t3", 0, 0}, {"t1", 0, 0}},
				"dan": {},
			}},
			{"bob writes in t1", func(t *testing.T) {
				mustSend(t, db, t1.ID, bob, "one")
				mustSend(t, db, t1.ID, bob, "two")
			}, want{
				"ann": {{"t1", 2, 2}, {"t2", 0, 0}},
				"bob": {{"t1", 2, 0}, {"t3", 0, 0}}, // your own messages are not unread
			}},
			{"cat writes in t2", func(t *testing.T) {
				mustSend(t, db, t2.ID, cat, "hi")
			}, want{
				"ann": {{"t2", 1, 1}, {"t1", 2, 2}},
				"cat": {{"t2", 1, 0}, {"t3", 0, 0}},
			}},
			{"ann answers in t1: sending is not reading", func(t *testing.T) {
				mustSend(t, db, t1.ID, ann, "three")
			}, want{
				"ann": {{"t1", 3, 2}, {"t2", 1, 1}}, // bob's two, before her own, are still unread
				"bob": {{"t1", 3, 1}, {"t3", 0, 0}},
			}},
			{"bob reads; marking read does not reorder", func(t *testing.T) {
				if err := db.MarkRead(ctx, t1.ID, bob.ID, 3); err != nil {
					t.Fatal(err)
				}
				if err := db.MarkRead(ctx, t3.ID, bob.ID, 0); err != nil {
					t.Fatal(err)
				}
			}, want{
				"bob": {{"t1", 3, 0}, {"t3", 0, 0}},
			}},
		}
		users := map[string]chat.User{"ann": ann, "bob": bob, "cat": cat, "dan": dan}
		for _, step := range steps {
			t.Run(step.name, func(t *testing.T) {
				step.do(t)
				for name, w := range step.want {
					if got := listThreads(t, db, users[name]); !slices.Equal(got, w) {
						t.Errorf("%s's threads = %v, want %v", name, got, w)
					}
				}
			})
		}

		t.Run("members, times and the single-thread view agree", func(t *testing.T) {
			ts, err := db.ThreadsForUser(ctx, ann.ID)
			if err != nil {
				t.Fatal(err)
			}
			if len(ts) != 2 || ts[0].ID != t1.ID {
				t.Fatalf("ann's threads = %+v", ts)
			}
			if got := ts[0].Members; !slices.Equal(got, []chat.User{ann, bob}) {
				t.Fatalf("t1 members = %v", usernames(got))
			}
			last, _, err := db.MessagesBefore(ctx, t1.ID, 100, 1)
			if err != nil || len(last) != 1 {
				t.Fatalf("last message of t1: %v %v", last, err)
			}
			if !ts[0].LastActivityAt.Equal(last[0].CreatedAt) || !ts[0].CreatedAt.Equal(t1.CreatedAt) {
				t.Fatalf("t1 last activity %v (want %v), created %v (want %v)",
					ts[0].LastActivityAt, last[0].CreatedAt, ts[0].CreatedAt, t1.CreatedAt)
			}
			for _, th := range ts {
				one, err := db.ThreadForMember(ctx, th.ID, ann.ID)
				if err != nil || !reflect.DeepEqual(one, th) {
					t.Fatalf("ThreadForMember = %+v, %v; want %+v", one, err, th)
				}
			}
		})
	})
}

func TestThreadForMemberNotFound(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *postgres.DB) {
		ann, bob, cat := mustUser(t, db, "ann"), mustUser(t, db, "bob"), mustUser(t, db, "cat")
		th := mustThread(t, db, "t", ann, bob)
		cases := []struct {
			name, threadID, userID string
		}{
			{"not a member", th.ID, cat.ID},
			{"no such thread", chat.NewID(), ann.ID},
			{"malformed thread id", "x", ann.ID},
			{"malformed user id", th.ID, "x"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				got, err := db.ThreadForMember(context.Background(), tc.threadID, tc.userID)
				wantCode(t, err, chat.ENotFound)
				if got.ID != "" {
					t.Fatalf("returned %+v with the error", got)
				}
			})
		}
	})
}

func TestMembers(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *postgres.DB) {
		ctx := context.Background()
		ann, bob, cat, dan := mustUser(t, db, "ann"), mustUser(t, db, "bob"), mustUser(t, db, "cat"), mustUser(t, db, "dan")
		th := mustThread(t, db, "t", ann, bob)
		for i := range 3 {
			mustSend(t, db, th.ID, ann, fmt.Sprint("before ", i))
		}

		t.Run("a new member starts at the last seq", func(t *testing.T) {
			if err := db.AddMember(ctx, th.ID, cat.ID, 10); err != nil {
				t.Fatal(err)
			}
			if got, want := mustMembership(t, db, th.ID, cat), (chat.Membership{ThreadID: th.ID, ThreadName: "t", AckedSeq: 3, ReadSeq: 3, LastSeq: 3}); got != want {
				t.Fatalf("cat's membership = %+v, want %+v", got, want)
			}
			seen, err := db.ThreadForMember(ctx, th.ID, cat.ID)
			if err != nil || seen.Unread != 0 {
				t.Fatalf("cat sees %+v, %v; want unread 0", seen, err)
			}
			if got := seen.Members; !slices.Equal(got, []chat.User{ann, bob, cat}) {
				t.Fatalf("members in join order = %v", usernames(got))
			}
		})

		t.Run("adding a member again changes nothing", func(t *testing.T) {
			mustSend(t, db, th.ID, ann, "after cat")
			if err := db.AddMember(ctx, th.ID, cat.ID, 3); err != nil { // at the limit, and still no error
				t.Fatal(err)
			}
			if got := mustMembership(t, db, th.ID, cat); got.AckedSeq != 3 || got.ReadSeq != 3 {
				t.Fatalf("re-adding reset cat's marks: %+v", got)
			}
			ids, err := db.MemberIDs(ctx, th.ID)
			if err != nil {
				t.Fatal(err)
			}
			// Join order; ann and bob joined together, so either may come first.
			if len(ids) != 3 || ids[2] != cat.ID || !slices.Contains(ids, ann.ID) || !slices.Contains(ids, bob.ID) {
				t.Fatalf("MemberIDs = %v; want ann and bob, then cat", ids)
			}
		})

		errCases := []struct {
			name             string
			threadID, userID string
			max              int
			code             string
		}{
			{"thread full", th.ID, dan.ID, 3, chat.EInvalid},
			{"no such thread", chat.NewID(), dan.ID, 10, chat.ENotFound},
			{"no such user", th.ID, chat.NewID(), 10, chat.ENotFound},
			{"malformed user", th.ID, "x", 10, chat.ENotFound},
		}
		for _, tc := range errCases {
			t.Run("add/"+tc.name, func(t *testing.T) {
				wantCode(t, db.AddMember(ctx, tc.threadID, tc.userID, tc.max), tc.code)
				if ids, _ := db.MemberIDs(ctx, th.ID); len(ids) != 3 {
					t.Fatalf("members after a refused add: %v", ids)
				}
			})
		}

		t.Run("remove", func(t *testing.T) {
			if err := db.RemoveMember(ctx, th.ID, cat.ID); err != nil {
				t.Fatal(err)
			}
			_, err := db.ThreadForMember(ctx, th.ID, cat.ID)
			wantCode(t, err, chat.ENotFound)
			wantCode(t, db.RemoveMember(ctx, th.ID, cat.ID), chat.ENotFound)
			wantCode(t, db.RemoveMember(ctx, chat.NewID(), ann.ID), chat.ENotFound)
			// There is room again.
			if err := db.AddMember(ctx, th.ID, dan.ID, 3); err != nil {
				t.Fatal(err)
			}
		})

		t.Run("member ids of an empty or missing thread", func(t *testing.T) {
			lone := mustThread(t, db, "lone", dan)
			if err := db.RemoveMember(ctx, lone.ID, dan.ID); err != nil {
				t.Fatal(err)
			}
			ids, err := db.MemberIDs(ctx, lone.ID)
			if err != nil || len(ids) != 0 {
				t.Fatalf("MemberIDs of an empty thread = %v, %v; want none, no error", ids, err)
			}
			_, err = db.MemberIDs(ctx, chat.NewID())
			wantCode(t, err, chat.ENotFound)
		})
	})
}

// TestAddMemberConcurrentLimit: hosts adding members at once cannot pass the limit.
func TestAddMemberConcurrentLimit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *postgres.DB) {
		ctx := context.Background()
		owner := mustUser(t, db, "owner")
		th := mustThread(t, db, "t", owner)
		const max, tries = 5, 12
		var (
			wg         sync.WaitGroup
			mu         sync.Mutex
			added, out int
			start      = make(chan struct{})
		)
		for i := range tries {
			u := mustUser(t, db, fmt.Sprintf("user%02d", i))
			wg.Go(func() {
				<-start
				err := db.AddMember(ctx, th.ID, u.ID, max)
				mu.Lock()
				defer mu.Unlock()
				switch chat.ErrorCode(err) {
				case "":
					added++
				case chat.EInvalid:
					out++
				default:
					t.Errorf("add member: %v", err)
				}
			})
		}
		close(start)
		wg.Wait()
		ids, err := db.MemberIDs(ctx, th.ID)
		if err != nil {
			t.Fatal(err)
		}
		if added != max-1 || out != tries-(max-1) || len(ids) != max {
			t.Fatalf("added %d, refused %d, members %d; want %d, %d, %d", added, out, len(ids), max-1, tries-(max-1), max)
		}
	})
}

func TestMarkRead(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *postgres.DB) {
		ctx := context.Background()
		ann, bob, cat := mustUser(t, db, "ann"), mustUser(t, db, "bob"), mustUser(t, db, "cat")
		th := mustThread(t, db, "t", ann, bob)
		for i := range 3 {
			mustSend(t, db, th.ID, bob, fmt.Sprint(i))
		}
		steps := []struct {
			name     string
			threadID string
			user     chat.User
			seq      int64
			code     string
			wantRead int64 // ann's read mark after the step
		}{
			{"forward", th.ID, ann, 2, "", 2},
			{"backward is ignored", th.ID, ann, 1, "", 2},
			{"same is a no-op", th.ID, ann, 2, "", 2},
			{"to the end", th.ID, ann, 3, "", 3},
			{"past the end", th.ID, ann, 4, chat.EInvalid, 3},
			{"negative", th.ID, ann, -1, chat.EInvalid, 3},
			{"not a member", th.ID, cat, 1, chat.ENotFound, 3},
			{"no such thread", chat.NewID(), ann, 1, chat.ENotFound, 3},
		}
		for _, s := range steps {
			t.Run(s.name, func(t *testing.T) {
				wantCode(t, db.MarkRead(ctx, s.threadID, s.user.ID, s.seq), s.code)
				m := mustMembership(t, db, th.ID, ann)
				if m.ReadSeq != s.wantRead || m.AckedSeq != 0 {
					t.Fatalf("ann's marks = read %d acked %d; want read %d acked 0", m.ReadSeq, m.AckedSeq, s.wantRead)
				}
				seen, err := db.ThreadForMember(ctx, th.ID, ann.ID)
				if err != nil || seen.Unread != 3-s.wantRead {
					t.Fatalf("unread = %d, %v; want %d", seen.Unread, err, 3-s.wantRead)
				}
			})
		}
	})
}

func TestAck(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *postgres.DB) {
		ctx := context.Background()
		ann, bob, cat := mustUser(t, db, "ann"), mustUser(t, db, "bob"), mustUser(t, db, "cat")
		t1 := mustThread(t, db, "t1", ann, bob)
		t2 := mustThread(t, db, "t2", ann, bob)
		for i := range 5 {
			mustSend(t, db, t1.ID, bob, fmt.Sprint(i))
		}
		mustSend(t, db, t2.ID, bob, "x")
		mustSend(t, db, t2.ID, bob, "y")

		acked := func(th chat.Thread, u chat.User) int64 {
			t.Helper()
			return mustMembership(t, db, th.ID, u).AckedSeq
		}
		type mark struct {
			th  chat.Thread
			u   chat.User
			seq int64
		}
		steps := []struct {
			name string
			acks []chat.AckUpdate
			want []mark // acked seqs afterwards
		}{
			{"a batch: the highest of repeats wins, strangers are ignored", []chat.AckUpdate{
				{ThreadID: t1.ID, UserID: ann.ID, Seq: 3},
				{ThreadID: t1.ID, UserID: ann.ID, Seq: 2},
				{ThreadID: t1.ID, UserID: bob.ID, Seq: 4},
				{ThreadID: t2.ID, UserID: ann.ID, Seq: 1},
				{ThreadID: t1.ID, UserID: cat.ID, Seq: 5},
				{ThreadID: "junk", UserID: ann.ID, Seq: 5},
				{ThreadID: t2.ID, UserID: bob.ID, Seq: 0},
			}, []mark{{t1, ann, 3}, {t1, bob, 4}, {t2, ann, 1}, {t2, bob, 0}}},
			{"never back", []chat.AckUpdate{
				{ThreadID: t1.ID, UserID: ann.ID, Seq: 1},
				{ThreadID: t1.ID, UserID: bob.ID, Seq: 5},
			}, []mark{{t1, ann, 3}, {t1, bob, 5}, {t2, ann, 1}}},
			{"empty", nil, []mark{{t1, ann, 3}, {t1, bob, 5}}},
		}
		for _, s := range steps {
			t.Run(s.name, func(t *testing.T) {
				if err := db.Ack(ctx, s.acks); err != nil {
					t.Fatal(err)
				}
				for _, w := range s.want {
					if got := acked(w.th, w.u); got != w.seq {
						t.Errorf("%s's ack in %s = %d, want %d", w.u.Username, w.th.Name, got, w.seq)
					}
				}
				if _, err := db.Membership(ctx, t1.ID, cat.ID); chat.ErrorCode(err) != chat.ENotFound {
					t.Fatalf("an ack made cat a member: %v", err)
				}
				// Acks are not read marks.
				if m := mustMembership(t, db, t1.ID, ann); m.ReadSeq != 0 {
					t.Fatalf("ack moved ann's read mark to %d", m.ReadSeq)
				}
			})
		}

		t.Run("more memberships than one statement takes", func(t *testing.T) {
			db.SetAckChunk(64) // this DB's last subtest: nothing else flushes through it after
			var members []chat.User
			for i := range 150 {
				members = append(members, mustUser(t, db, fmt.Sprintf("m%03d", i)))
			}
			big := mustThread(t, db, "big", ann, members...)
			for i := range 4 {
				mustSend(t, db, big.ID, ann, fmt.Sprint(i))
			}
			var acks []chat.AckUpdate
			for i, m := range members {
				acks = append(acks,
					chat.AckUpdate{ThreadID: big.ID, UserID: m.ID, Seq: int64(i%4 + 1)},
					chat.AckUpdate{ThreadID: big.ID, UserID: m.ID, Seq: 1})
			}
			if err := db.Ack(ctx, acks); err != nil {
				t.Fatal(err)
			}
			for i, m := range members {
				if got := acked(big, m); got != int64(i%4+1) {
					t.Fatalf("%s acked = %d, want %d", m.Username, got, i%4+1)
				}
			}
		})
	})
}

func TestMemberships(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *postgres.DB) {
		ctx := context.Background()
		ann, bob, cat := mustUser(t, db, "ann"), mustUser(t, db, "bob"), mustUser(t, db, "cat")
		t1 := mustThread(t, db, "one", ann, bob)
		t2 := mustThread(t, db, "two", bob, ann)
		t3 := mustThread(t, db, "three", bob, cat)
		mustSend(t, db, t2.ID, bob, "a")
		mustSend(t, db, t1.ID, bob, "b")
		mustSend(t, db, t1.ID, bob, "c")
		if err := db.Ack(ctx, []chat.AckUpdate{{ThreadID: t1.ID, UserID: ann.ID, Seq: 1}}); err != nil {
			t.Fatal(err)
		}

		got, err := db.Memberships(ctx, ann.ID)
		if err != nil {
			t.Fatal(err)
		}
		want := []chat.Membership{ // newest activity first
			{ThreadID: t1.ID, ThreadName: "one", AckedSeq: 1, ReadSeq: 0, LastSeq: 2},
			{ThreadID: t2.ID, ThreadName: "two", AckedSeq: 0, ReadSeq: 0, LastSeq: 1},
		}
		if !slices.Equal(got, want) {
			t.Fatalf("Memberships = %+v, want %+v", got, want)
		}
		if none, err := db.Memberships(ctx, mustUser(t, db, "dan").ID); err != nil || none == nil || len(none) != 0 {
			t.Fatalf("Memberships of a user in no thread = %v, %v; want an empty list", none, err)
		}
		if m := mustMembership(t, db, t1.ID, ann); m != want[0] {
			t.Fatalf("Membership = %+v, want %+v", m, want[0])
		}
		_, err = db.Membership(ctx, t3.ID, ann.ID)
		wantCode(t, err, chat.ENotFound)
	})
}

// TestMembershipsOf: the batched lookup a host's repair uses answers, for every user,
// exactly what Memberships answers for that user alone, across query chunks.
func TestMembershipsOf(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *postgres.DB) {
		ctx := context.Background()
		ann, bob, cat, dan := mustUser(t, db, "ann"), mustUser(t, db, "bob"), mustUser(t, db, "cat"), mustUser(t, db, "dan")
		t1 := mustThread(t, db, "one", ann, bob)
		t2 := mustThread(t, db, "two", bob, ann, cat)
		mustSend(t, db, t2.ID, bob, "a")
		mustSend(t, db, t1.ID, bob, "b")
		mustSend(t, db, t1.ID, bob, "c")
		if err := db.Ack(ctx, []chat.AckUpdate{{ThreadID: t1.ID, UserID: ann.ID, Seq: 1}, {ThreadID: t2.ID, UserID: cat.ID, Seq: 1}}); err != nil {
			t.Fatal(err)
		}
		for _, chunk := range []int{0, 1, 2} { // 0: the default, all in one query
			t.Run(fmt.Sprintf("chunk %d", chunk), func(t *testing.T) {
				db.SetMembershipsChunk(chunk)
				defer db.SetMembershipsChunk(0)
				ids := []string{cat.ID, ann.ID, "junk", dan.ID, bob.ID, ann.ID, chat.NewID()}
				got, err := db.MembershipsOf(ctx, ids)
				if err != nil {
					t.Fatal(err)
				}
				for _, u := range []chat.User{ann, bob, cat} {
					want, err := db.Memberships(ctx, u.ID)
					if err != nil {
						t.Fatal(err)
					}
					if len(want) == 0 || !slices.Equal(got[u.ID], want) {
						t.Fatalf("MembershipsOf[%s] = %+v, want %+v", u.Username, got[u.ID], want)
					}
				}
				if len(got) != 3 {
					t.Fatalf("MembershipsOf answered %d users (%v), want ann, bob and cat: dan is in no thread, the rest are no users", len(got), got)
				}
			})
		}
		if got, err := db.MembershipsOf(ctx, nil); err != nil || len(got) != 0 {
			t.Fatalf("MembershipsOf(nil) = %v, %v; want an empty map", got, err)
		}
	})
}

func TestSharedWith(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *postgres.DB) {
		ctx := context.Background()
		ann, bob, cat, dan, eve := mustUser(t, db, "ann"), mustUser(t, db, "bob"), mustUser(t, db, "cat"), mustUser(t, db, "dan"), mustUser(t, db, "eve")
		mustThread(t, db, "ab", ann, bob)
		mustThread(t, db, "ac", cat, ann, bob) // bob shares two threads with ann: listed once
		mustThread(t, db, "de", dan, eve)
		fay := mustUser(t, db, "fay")
		cases := []struct {
			name       string
			user       chat.User
			candidates []string
			want       []string
		}{
			{"mixed", ann, []string{eve.ID, cat.ID, bob.ID, ann.ID, cat.ID, chat.NewID(), "junk"}, []string{cat.ID, bob.ID, ann.ID}},
			{"nobody shared", ann, []string{dan.ID, eve.ID}, []string{}},
			{"only self, in no thread", fay, []string{fay.ID}, []string{fay.ID}},
			{"self is always shared", eve, []string{eve.ID, ann.ID}, []string{eve.ID}},
			{"no candidates", ann, nil, []string{}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				got, err := db.SharedWith(ctx, tc.user.ID, tc.candidates)
				if err != nil {
					t.Fatal(err)
				}
				if got == nil || !slices.Equal(got, tc.want) {
					t.Fatalf("SharedWith = %v, want %v", got, tc.want)
				}
			})
		}
	})
}
