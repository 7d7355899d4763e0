package postgres_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx", for the lock holder

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/dbtest"
	"github.com/switchboard-chat/switchboard/pkg/postgres"
)

// An ack flush must not queue behind a transaction that holds one of its rows (a
// MarkRead; before migration 0010, every send, which moved its sender's read mark):
// the acks whose rows are free are durable at once, and the held one once that
// transaction commits, before Ack returns. With the flush waiting for each held row
// in turn, everything behind the rows it had already locked waited for the whole
// flush (store p99 60-180 ms at 500 msg/s, when sends held these rows).
func TestAckDoesNotWaitForASend(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := dbtest.NewDatabaseURL(t)
	db, err := postgres.OpenURL(ctx, dbURL, postgres.Config{MaxOpenConns: 10, Now: new(clock).Now}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	ann, bob := mustUser(t, db, "ann"), mustUser(t, db, "bob")
	var threads []chat.Thread
	for _, name := range []string{"t1", "t2", "t3"} {
		th := mustThread(t, db, name, ann, bob)
		mustSend(t, db, th.ID, bob, "hello")
		threads = append(threads, th)
	}
	held := threads[1] // in the middle of the flush's (thread, user) order or not: it must not matter

	_, tx := lockHolder(t, dbURL)
	// The lock a MarkRead takes on ann's membership of the held thread.
	if _, err := tx.ExecContext(ctx, `UPDATE thread_members SET read_seq = read_seq WHERE thread_id = $1 AND user_id = $2`, held.ID, ann.ID); err != nil {
		t.Fatal(err)
	}

	var acks []chat.AckUpdate
	for _, th := range threads {
		acks = append(acks, chat.AckUpdate{ThreadID: th.ID, UserID: ann.ID, Seq: 1}, chat.AckUpdate{ThreadID: th.ID, UserID: bob.ID, Seq: 1})
	}
	done := make(chan error, 1)
	go func() { done <- db.Ack(ctx, acks) }()

	acked := func(th chat.Thread, u chat.User) int64 { return mustMembership(t, db, th.ID, u).AckedSeq }
	free := func() bool {
		for _, th := range threads {
			for _, u := range []chat.User{ann, bob} {
				if th.ID == held.ID && u.ID == ann.ID {
					continue
				}
				if acked(th, u) != 1 {
					return false
				}
			}
		}
		return true
	}
	deadline := time.Now().Add(10 * time.Second)
	for !free() {
		if time.Now().After(deadline) {
			t.Fatal("the acks of free rows are not durable while a send holds another row of the flush")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := acked(held, ann); got != 0 {
		t.Fatalf("the held row's ack = %d while the send still holds it", got)
	}
	select {
	case err := <-done:
		t.Fatalf("Ack returned (%v) before the held row's ack was durable", err)
	case <-time.After(100 * time.Millisecond):
	}

	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Ack did not return after the send committed")
	}
	if got := acked(held, ann); got != 1 {
		t.Fatalf("the held row's ack = %d after Ack returned, want 1", got)
	}
}

// lockHolder opens a connection of its own to dbURL and begins a transaction on it,
// in which a test takes the row locks another writer would hold; the transaction is
// rolled back at the end of the test unless the test commits it first.
func lockHolder(t *testing.T, dbURL string) (*sql.DB, *sql.Tx) {
	t.Helper()
	raw, err := sql.Open("pgx", dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = raw.Close() })
	tx, err := raw.BeginTx(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback() })
	return raw, tx
}
