package postgres

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"gorm.io/gorm"

	"github.com/switchboard-chat/switchboard/pkg/chat"
)

// memberInsertChunk bounds the rows of one multi-row INSERT into thread_members, well
// under both dialects' limits on bound parameters.
const memberInsertChunk = 500

// ackSQLiteChunk bounds the acks of one UPDATE statement (SQLite): its CASE is evaluated per
// matched row, so the cost grows with the square of the chunk.
const ackSQLiteChunk = 100

// ackPGChunk bounds the acks of one ack_members call: the rows one commit keeps locked
// (DB.ackChunk overrides it, for tests).
const ackPGChunk = 1000

// CreateThread stores a thread and its members in one transaction and returns it as the
// creator sees it. The creator is a member whether or not MemberIDs lists them;
// repeated ids count once. Returns chat.EInvalid for a malformed or unknown member id.
func (d *DB) CreateThread(ctx context.Context, nt chat.NewThread) (chat.Thread, error) {
	ids := make([]string, 0, len(nt.MemberIDs)+1)
	seen := make(map[string]bool, len(nt.MemberIDs)+1)
	for _, id := range append([]string{nt.CreatedBy}, nt.MemberIDs...) {
		if !chat.ValidID(id) {
			return chat.Thread{}, chat.Errorf(chat.EInvalid, "malformed member id")
		}
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	now := d.nowUTC()
	threadID := chat.NewID()
	var out chat.Thread
	err := d.gdb.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if _, err := exec(tx, `INSERT INTO threads (id, name, created_by, last_seq, created_at, last_activity_at)
			VALUES (?, ?, ?, 0, ?, ?)`, threadID, nt.Name, nt.CreatedBy, now, now); err != nil {
			return err
		}
		for chunk := range slices.Chunk(ids, memberInsertChunk) {
			var q strings.Builder
			q.WriteString(`INSERT INTO thread_members (thread_id, user_id, acked_seq, read_seq, joined_at) VALUES `)
			args := make([]any, 0, 3*len(chunk))
			for i, id := range chunk {
				if i > 0 {
					q.WriteString(", ")
				}
				q.WriteString("(?, ?, 0, 0, ?)")
				args = append(args, threadID, id, now)
			}
			if _, err := exec(tx, q.String(), args...); err != nil {
				return err
			}
		}
		ts, err := loadThreads(tx, nt.CreatedBy, threadID)
		if err != nil {
			return err
		}
		if len(ts) != 1 {
			return fmt.Errorf("thread %s not found after insert", threadID)
		}
		out = ts[0]
		return nil
	})
	if isForeignKeyViolation(err) {
		return chat.Thread{}, chat.Errorf(chat.EInvalid, "a member or the creator does not exist")
	} else if err != nil {
		return chat.Thread{}, fmt.Errorf("create thread: %w", err)
	}
	return out, nil
}

// ThreadsForUser lists the user's threads as that user sees them (Members in join
// order, the creator first among those who joined together; LastSeq; Unread), newest
// activity first. Two queries however many threads: one for the threads, one for all
// their members.
func (d *DB) ThreadsForUser(ctx context.Context, userID string) ([]chat.Thread, error) {
	if !chat.ValidID(userID) {
		return []chat.Thread{}, nil
	}
	ts, err := loadThreads(d.gdb.WithContext(ctx), userID, "")
	if err != nil {
		return nil, fmt.Errorf("threads of user %s: %w", userID, err)
	}
	return ts, nil
}

// ThreadForMember returns one thread as userID sees it. Returns chat.ENotFound when the
// thread does not exist or userID is not a member, so a non-member learns nothing.
func (d *DB) ThreadForMember(ctx context.Context, threadID, userID string) (chat.Thread, error) {
	if !chat.ValidID(threadID) || !chat.ValidID(userID) {
		return chat.Thread{}, errNoThread()
	}
	ts, err := loadThreads(d.gdb.WithContext(ctx), userID, threadID)
	if err != nil {
		return chat.Thread{}, fmt.Errorf("thread %s: %w", threadID, err)
	}
	if len(ts) == 0 {
		return chat.Thread{}, errNoThread()
	}
	return ts[0], nil
}

func errNoThread() error { return chat.Errorf(chat.ENotFound, "no such thread") }

// The threads a user is in, with the user's unread count: the messages after the
// user's read mark that others sent (api/PROTOCOL.md). Storing a message leaves its
// sender's read mark where it is (migration 0010), so one's own messages can lie
// beyond it and are counted out here, through the (thread_id, seq) index: the cost
// is the unread messages themselves, none when the mark is at last_seq, which the
// CASE checks first.
const threadsSQL = `SELECT t.id, t.name, t.created_by, t.last_seq, t.created_at, t.last_activity_at,
	CASE WHEN t.last_seq > tm.read_seq THEN
		(SELECT COUNT(*) FROM messages m WHERE m.thread_id = t.id AND m.seq > tm.read_seq AND m.sender_id <> tm.user_id)
	ELSE 0 END
FROM thread_members tm
JOIN threads t ON t.id = tm.thread_id
WHERE tm.user_id = ?`

// The members (as users) of threads, in join order; those who joined together (at
// creation) start with the creator, then go by username.
const (
	membersSQL = `SELECT tm.thread_id, u.id, u.username
FROM thread_members tm
JOIN users u ON u.id = tm.user_id
JOIN threads t ON t.id = tm.thread_id`
	membersOrder = ` ORDER BY tm.joined_at, CASE WHEN tm.user_id = t.created_by THEN 0 ELSE 1 END, u.username`
)

// newestActivityFirst is the order of ThreadsForUser and Memberships.
const newestActivityFirst = ` ORDER BY t.last_activity_at DESC, t.id DESC`

// loadThreads returns the threads of userID (only threadID when it is not empty) as
// userID sees them, newest activity first.
func loadThreads(db *gorm.DB, userID, threadID string) ([]chat.Thread, error) {
	q, mq := threadsSQL, membersSQL
	args, marg := []any{userID}, userID
	if threadID == "" {
		mq += ` JOIN thread_members me ON me.thread_id = tm.thread_id WHERE me.user_id = ?`
	} else {
		q += ` AND tm.thread_id = ?`
		mq += ` WHERE tm.thread_id = ?`
		args, marg = append(args, threadID), threadID
	}
	q += newestActivityFirst
	mq += membersOrder

	rows, err := db.Raw(q, args...).Rows()
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	ts := []chat.Thread{}
	for rows.Next() {
		t := chat.Thread{Members: []chat.User{}}
		if err := rows.Scan(&t.ID, &t.Name, &t.CreatedBy, &t.LastSeq, &t.CreatedAt, &t.LastActivityAt, &t.Unread); err != nil {
			return nil, err
		}
		t.CreatedAt, t.LastActivityAt = t.CreatedAt.UTC(), t.LastActivityAt.UTC()
		ts = append(ts, t)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows.Close() // SQLite has one connection: free it before the next query.
	if len(ts) == 0 {
		return ts, nil
	}

	byID := make(map[string]*chat.Thread, len(ts))
	for i := range ts {
		byID[ts[i].ID] = &ts[i]
	}
	mrows, err := db.Raw(mq, marg).Rows()
	if err != nil {
		return nil, err
	}
	defer mrows.Close()
	for mrows.Next() {
		var (
			tid string
			u   chat.User
		)
		if err := mrows.Scan(&tid, &u.ID, &u.Username); err != nil {
			return nil, err
		}
		// A thread joined between the two queries is not listed: skip its members.
		if t := byID[tid]; t != nil {
			t.Members = append(t.Members, u)
		}
	}
	return ts, mrows.Err()
}

// MemberIDs returns the ids of a thread's members in join order (those who joined
// together in no particular order). Returns chat.ENotFound
// when the thread does not exist (a thread everyone left has none, and that is no error).
func (d *DB) MemberIDs(ctx context.Context, threadID string) ([]string, error) {
	if !chat.ValidID(threadID) {
		return nil, errNoThread()
	}
	if err := d.failFast(); err != nil {
		return nil, err
	}
	db := d.gdb.WithContext(ctx)
	ids, err := queryStrings(db, `SELECT user_id FROM thread_members WHERE thread_id = ? ORDER BY joined_at`, threadID)
	if err != nil {
		d.noteTimeout(err)
		return nil, fmt.Errorf("members of thread %s: %w", threadID, err)
	}
	if len(ids) > 0 {
		return ids, nil
	}
	var n int64
	if err := scanRow(db, `SELECT COUNT(*) FROM threads WHERE id = ?`, []any{threadID}, &n); err != nil {
		return nil, fmt.Errorf("members of thread %s: %w", threadID, err)
	}
	if n == 0 {
		return nil, errNoThread()
	}
	return ids, nil
}

// AddMember adds userID to the thread; adding a member again changes nothing. The new
// member's acked and read seq start at the thread's last seq, so earlier history is
// neither pushed to them as missed nor counted as unread. Returns chat.ENotFound when
// the thread or the user does not exist, chat.EInvalid when the thread already has
// maxMembers members (maxMembers <= 0: no limit).
//
// It takes the thread row's lock, as CreateMessage does: concurrent AddMembers cannot
// both pass the limit, and every concurrent message either precedes the new member's
// start seq or is stored by a sender that sees the new member among the recipients.
func (d *DB) AddMember(ctx context.Context, threadID, userID string, maxMembers int) error {
	if !chat.ValidID(threadID) {
		return errNoThread()
	}
	if !chat.ValidID(userID) {
		return chat.Errorf(chat.ENotFound, "no such user")
	}
	err := d.gdb.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var lastSeq int64
		err := scanRow(tx, `UPDATE threads SET last_seq = last_seq WHERE id = ? RETURNING last_seq`, []any{threadID}, &lastSeq)
		if errors.Is(err, sql.ErrNoRows) {
			return errNoThread()
		} else if err != nil {
			return err
		}
		var count, already int64
		if err := scanRow(tx, `SELECT COUNT(*), COUNT(CASE WHEN user_id = ? THEN 1 END) FROM thread_members WHERE thread_id = ?`,
			[]any{userID, threadID}, &count, &already); err != nil {
			return err
		}
		if already > 0 {
			return nil
		}
		if maxMembers > 0 && count >= int64(maxMembers) {
			return chat.Errorf(chat.EInvalid, "a thread has at most %d members", maxMembers)
		}
		_, err = exec(tx, `INSERT INTO thread_members (thread_id, user_id, acked_seq, read_seq, joined_at) VALUES (?, ?, ?, ?, ?)`,
			threadID, userID, lastSeq, lastSeq, d.nowUTC())
		return err
	})
	switch {
	case err == nil || chat.AsError(err) != nil:
		return err
	case isForeignKeyViolation(err):
		return chat.Errorf(chat.ENotFound, "no such user")
	default:
		return fmt.Errorf("add member to thread %s: %w", threadID, err)
	}
}

// RemoveMember removes userID from the thread. Returns chat.ENotFound when userID is
// not a member (or the thread does not exist).
func (d *DB) RemoveMember(ctx context.Context, threadID, userID string) error {
	if !chat.ValidID(threadID) || !chat.ValidID(userID) {
		return chat.Errorf(chat.ENotFound, "no such member")
	}
	n, err := exec(d.gdb.WithContext(ctx), `DELETE FROM thread_members WHERE thread_id = ? AND user_id = ?`, threadID, userID)
	if err != nil {
		return fmt.Errorf("remove member from thread %s: %w", threadID, err)
	}
	if n == 0 {
		return chat.Errorf(chat.ENotFound, "no such member")
	}
	return nil
}

// MarkRead moves the member's read mark forward to seq; a seq at or below the mark
// changes nothing and is no error. Returns chat.ENotFound for a non-member,
// chat.EInvalid for a seq beyond the thread's last seq (or negative).
func (d *DB) MarkRead(ctx context.Context, threadID, userID string, seq int64) error {
	if !chat.ValidID(threadID) || !chat.ValidID(userID) {
		return errNoThread()
	}
	if seq < 0 {
		return chat.Errorf(chat.EInvalid, "seq must not be negative")
	}
	n, err := exec(d.gdb.WithContext(ctx), `UPDATE thread_members SET read_seq = ?
		WHERE thread_id = ? AND user_id = ? AND read_seq < ?
		AND ? <= (SELECT last_seq FROM threads WHERE id = ?)`,
		seq, threadID, userID, seq, seq, threadID)
	if err != nil {
		return fmt.Errorf("mark read in thread %s: %w", threadID, err)
	}
	if n > 0 {
		return nil
	}
	// Nothing moved: tell a non-member or a seq past the end from a mark already there.
	m, err := d.Membership(ctx, threadID, userID)
	if err != nil {
		return err
	}
	if seq > m.LastSeq {
		return chat.Errorf(chat.EInvalid, "seq %d is past the thread's last seq %d", seq, m.LastSeq)
	}
	return nil
}

// Ack moves acked seqs forward, never back, many at once: on PostgreSQL one call of
// ack_members_nowait per 1,000 distinct memberships, then ack_members for the few
// rows a send held meanwhile; on SQLite one UPDATE per 100. Every ack is durable when
// Ack returns. The statements are not wrapped in one transaction, on purpose:
// acks are forward-only and idempotent, so a batch cut short is retried whole at no
// harm, while one transaction over many statements would hold row locks longer and
// could deadlock with another host's overlapping batch. Acks of non-members, malformed
// ids and seqs <= 0 are ignored; several acks of one membership count as their
// highest. Callers check seqs against the thread's last seq.
func (d *DB) Ack(ctx context.Context, acks []chat.AckUpdate) error {
	type key struct{ threadID, userID string }
	highest := make(map[key]int64, len(acks))
	for _, a := range acks {
		if a.Seq <= 0 || !chat.ValidID(a.ThreadID) || !chat.ValidID(a.UserID) {
			continue
		}
		k := key{a.ThreadID, a.UserID}
		if a.Seq > highest[k] {
			highest[k] = a.Seq
		}
	}
	merged := make([]chat.AckUpdate, 0, len(highest))
	for k, seq := range highest {
		merged = append(merged, chat.AckUpdate{ThreadID: k.threadID, UserID: k.userID, Seq: seq})
	}
	// A stable order gives stable statement text and lock order between hosts.
	slices.SortFunc(merged, func(a, b chat.AckUpdate) int {
		return cmp.Or(cmp.Compare(a.ThreadID, b.ThreadID), cmp.Compare(a.UserID, b.UserID))
	})
	if d.dialect == dialectPostgres {
		// One call of ack_members_nowait (migration 0009) per chunk, in autocommit: it
		// applies what it can lock at once and never waits for a transaction that holds
		// a row (a MarkRead, another host's flush; before migration 0010 every send
		// moved its sender's read mark in these rows), so a flush never queues behind
		// them. The few rows it skipped then go to ack_members (0006), which waits for
		// them.
		var busy []chat.AckUpdate
		for chunk := range slices.Chunk(merged, cmp.Or(d.ackChunk, ackPGChunk)) {
			skipped, err := d.ackNowait(ctx, chunk)
			if err != nil {
				return fmt.Errorf("ack %d memberships: %w", len(merged), err)
			}
			busy = append(busy, skipped...)
		}
		for chunk := range slices.Chunk(busy, cmp.Or(d.ackChunk, ackPGChunk)) {
			threads, users, seqs := ackArrays(chunk)
			if _, err := d.sqlDB.ExecContext(ctx, `SELECT ack_members($1::uuid[], $2::uuid[], $3::bigint[])`, threads, users, seqs); err != nil {
				return fmt.Errorf("ack %d memberships: %w", len(merged), err)
			}
		}
		return nil
	}
	db := d.gdb.WithContext(ctx)
	for chunk := range slices.Chunk(merged, ackSQLiteChunk) {
		q, args := ackSQL(chunk)
		if _, err := exec(db, q, args...); err != nil {
			return fmt.Errorf("ack %d memberships: %w", len(merged), err)
		}
	}
	return nil
}

// ackArrays is a chunk of acks as the three array parameters of ack_members and
// ack_members_nowait.
func ackArrays(chunk []chat.AckUpdate) (threads, users, seqs string) {
	t, u, q := make([]string, len(chunk)), make([]string, len(chunk)), make([]string, len(chunk))
	for i, a := range chunk {
		t[i], u[i], q[i] = a.ThreadID, a.UserID, strconv.FormatInt(a.Seq, 10)
	}
	return pgArray(t), pgArray(u), pgArray(q)
}

// ackNowait applies one chunk of acks (in (thread, user) order) with
// ack_members_nowait and returns those it left because a send held their rows.
func (d *DB) ackNowait(ctx context.Context, chunk []chat.AckUpdate) ([]chat.AckUpdate, error) {
	threads, users, seqs := ackArrays(chunk)
	rows, err := d.sqlDB.QueryContext(ctx, `SELECT thread_id, user_id, seq FROM ack_members_nowait($1::uuid[], $2::uuid[], $3::bigint[])`,
		threads, users, seqs)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var left []chat.AckUpdate
	for rows.Next() {
		var a chat.AckUpdate
		if err := rows.Scan(&a.ThreadID, &a.UserID, &a.Seq); err != nil {
			return nil, err
		}
		left = append(left, a)
	}
	return left, rows.Err()
}

// ackSQL builds one forward-only UPDATE for acks (distinct memberships). The WHERE picks
// the rows whose mark is behind; the CASE gives each its seq. Only comparisons with
// columns type the parameters, so the same text runs on both dialects.
func ackSQL(acks []chat.AckUpdate) (string, []any) {
	var set, where strings.Builder
	args := make([]any, 0, 6*len(acks))
	set.WriteString(`UPDATE thread_members SET acked_seq = CASE`)
	for _, a := range acks {
		set.WriteString(` WHEN thread_id = ? AND user_id = ? THEN ?`)
		args = append(args, a.ThreadID, a.UserID, a.Seq)
	}
	set.WriteString(` ELSE acked_seq END WHERE `)
	for i, a := range acks {
		if i > 0 {
			where.WriteString(` OR `)
		}
		where.WriteString(`(thread_id = ? AND user_id = ? AND acked_seq < ?)`)
		args = append(args, a.ThreadID, a.UserID, a.Seq)
	}
	return set.String() + where.String(), args
}

// membershipSQL selects a user's position in their threads.
const membershipSQL = `SELECT t.id, t.name, tm.acked_seq, tm.read_seq, t.last_seq
FROM thread_members tm
JOIN threads t ON t.id = tm.thread_id
WHERE tm.user_id = ?`

// Memberships lists the user's position (acked, read and last seq) in each of their
// threads, newest activity first. A user in no thread gets an empty list.
func (d *DB) Memberships(ctx context.Context, userID string) ([]chat.Membership, error) {
	if !chat.ValidID(userID) {
		return []chat.Membership{}, nil
	}
	by := map[string][]chat.Membership{}
	if err := d.membershipsOf(ctx, []string{userID}, by); err != nil {
		return nil, fmt.Errorf("memberships of user %s: %w", userID, err)
	}
	if by[userID] == nil {
		return []chat.Membership{}, nil
	}
	return by[userID], nil
}

// membershipsChunk bounds the users of one MembershipsOf query (DB.membershipsChunk
// overrides it, for tests): a host's repair after another host's death asks for every
// user it holds sockets of, which can be thousands.
const membershipsChunk = 500

// MembershipsOf lists, like Memberships, each user's position in each of their threads,
// with one query per 500 users instead of one per user: what a host needs to repair all
// its sockets at once, while the other hosts' clients reconnect and load the database
// too. Users in no thread, and ids that are not valid, are absent from the map.
func (d *DB) MembershipsOf(ctx context.Context, userIDs []string) (map[string][]chat.Membership, error) {
	out := make(map[string][]chat.Membership, len(userIDs))
	valid := make([]string, 0, len(userIDs))
	for _, id := range userIDs {
		if chat.ValidID(id) {
			valid = append(valid, id)
		}
	}
	slices.Sort(valid)
	valid = slices.Compact(valid)
	for chunk := range slices.Chunk(valid, cmp.Or(d.membershipsChunk, membershipsChunk)) {
		if err := d.membershipsOf(ctx, chunk, out); err != nil {
			return nil, fmt.Errorf("memberships of %d users: %w", len(valid), err)
		}
	}
	return out, nil
}

func (d *DB) membershipsOf(ctx context.Context, userIDs []string, out map[string][]chat.Membership) error {
	rows, err := d.gdb.WithContext(ctx).Raw(`SELECT tm.user_id, t.id, t.name, tm.acked_seq, tm.read_seq, t.last_seq
FROM thread_members tm
JOIN threads t ON t.id = tm.thread_id
WHERE tm.user_id IN ?`+newestActivityFirst, userIDs).Rows()
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var uid string
		var m chat.Membership
		if err := rows.Scan(&uid, &m.ThreadID, &m.ThreadName, &m.AckedSeq, &m.ReadSeq, &m.LastSeq); err != nil {
			return err
		}
		out[uid] = append(out[uid], m)
	}
	return rows.Err()
}

// Membership returns the user's position in one thread. Returns chat.ENotFound when the
// user is not a member (or the thread does not exist).
func (d *DB) Membership(ctx context.Context, threadID, userID string) (chat.Membership, error) {
	if !chat.ValidID(threadID) || !chat.ValidID(userID) {
		return chat.Membership{}, errNoThread()
	}
	if err := d.failFast(); err != nil {
		return chat.Membership{}, err
	}
	var m chat.Membership
	err := scanRow(d.gdb.WithContext(ctx), membershipSQL+` AND tm.thread_id = ?`, []any{userID, threadID},
		&m.ThreadID, &m.ThreadName, &m.AckedSeq, &m.ReadSeq, &m.LastSeq)
	if errors.Is(err, sql.ErrNoRows) {
		return chat.Membership{}, errNoThread()
	} else if err != nil {
		d.noteTimeout(err)
		return chat.Membership{}, fmt.Errorf("membership in thread %s: %w", threadID, err)
	}
	return m, nil
}

// SharedWith returns those of candidates that share at least one thread with userID,
// in the candidates' order without repeats; userID itself is included when among the
// candidates. Unknown or malformed ids are left out.
func (d *DB) SharedWith(ctx context.Context, userID string, candidates []string) ([]string, error) {
	want := make([]string, 0, len(candidates))
	others := make([]string, 0, len(candidates))
	for _, c := range candidates {
		if !chat.ValidID(c) || slices.Contains(want, c) {
			continue
		}
		want = append(want, c)
		if c != userID {
			others = append(others, c)
		}
	}
	out := []string{}
	if len(want) == 0 {
		return out, nil
	}
	shared := map[string]bool{userID: true}
	if len(others) > 0 && chat.ValidID(userID) {
		ids, err := queryStrings(d.gdb.WithContext(ctx), `SELECT DISTINCT o.user_id
			FROM thread_members me
			JOIN thread_members o ON o.thread_id = me.thread_id
			WHERE me.user_id = ? AND o.user_id IN ?`, userID, others)
		if err != nil {
			return nil, fmt.Errorf("users sharing a thread with %s: %w", userID, err)
		}
		for _, id := range ids {
			shared[id] = true
		}
	}
	for _, c := range want {
		if shared[c] {
			out = append(out, c)
		}
	}
	return out, nil
}

// queryStrings runs a query of one text column and returns its values.
func queryStrings(db *gorm.DB, q string, args ...any) ([]string, error) {
	rows, err := db.Raw(q, args...).Rows()
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}
