package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/switchboard-chat/switchboard/pkg/chat"
)

// errDuplicate reports, inside the store, that the sender already stored a message
// with this client_msg_id. The transaction that met it must be rolled back: it has
// taken a seq it will not use.
var errDuplicate = errors.New("duplicate client_msg_id")

func errNotMember() error {
	return chat.Errorf(chat.ENotMember, "you are not a member of that thread")
}

// CreateMessage stores m with the thread's next seq in one transaction and commits
// before it returns, so a message it returns is durable. Concurrent senders to one
// thread queue on the thread row's lock, so seqs have no gaps or duplicates. A repeat
// of the sender's client_msg_id (sequential or concurrent) stores nothing and returns
// the first message with Created false; client_msg_id is unique per sender, so the
// first message may be in another thread. Members are the thread's member ids, read
// under the lock, in no particular order. Returns chat.ENotMember when the sender is
// not a member, also when the thread does not exist.
//
// On PostgreSQL concurrent calls are stored together (group commit, see committer);
// each still returns only after the commit that made its message durable.
func (d *DB) CreateMessage(ctx context.Context, m chat.NewMessage) (chat.Stored, error) {
	if !chat.ValidID(m.ThreadID) || !chat.ValidID(m.SenderID) {
		return chat.Stored{}, errNotMember()
	}
	if err := d.failFast(); err != nil {
		return chat.Stored{}, err
	}
	var (
		st  chat.Stored
		err error
	)
	if d.committer != nil {
		st, err = d.committer.submit(ctx, m)
	} else {
		st, err = d.createMessage(ctx, m)
	}
	d.noteTimeout(err)
	return st, err
}

// createMessage stores one message in its own transaction.
func (d *DB) createMessage(ctx context.Context, m chat.NewMessage) (chat.Stored, error) {
	if d.dialect == dialectPostgres {
		return d.createMessageOneTrip(ctx, m)
	}
	var st chat.Stored
	err := d.gdb.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var err error
		st, err = createMessageTx(tx, m, d.nowUTC())
		return err
	})
	switch {
	case err == nil:
		return st, nil
	case errors.Is(err, errDuplicate):
		first, err := d.messageByClientMsgID(ctx, m.SenderID, m.ClientMsgID)
		if err != nil {
			return chat.Stored{}, fmt.Errorf("create message: read the first of a repeat: %w", err)
		}
		return chat.Stored{Message: first, Created: false, Members: st.Members}, nil
	case chat.AsError(err) != nil:
		return chat.Stored{}, err
	default:
		return chat.Stored{}, fmt.Errorf("create message in thread %s: %w", m.ThreadID, err)
	}
}

// SQL of createMessageTx.
const (
	// Takes the thread row's lock (held to commit) and the next seq. last_activity_at
	// never moves back, whatever the order in which the senders' clocks were read.
	nextSeqSQL = `UPDATE threads
SET last_seq = last_seq + 1,
    last_activity_at = CASE WHEN last_activity_at < ? THEN ? ELSE last_activity_at END
WHERE id = ? AND EXISTS (SELECT 1 FROM thread_members WHERE thread_id = threads.id AND user_id = ?)
RETURNING last_seq`
	threadMemberIDsSQL = `SELECT user_id FROM thread_members WHERE thread_id = ?`
	// A repeat of (sender_id, client_msg_id) inserts nothing and returns no row.
	insertMessageSQL = `INSERT INTO messages (id, thread_id, seq, sender_id, client_msg_id, body, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (sender_id, client_msg_id) DO NOTHING
RETURNING seq`
)

// createMessageTx stores one message inside tx, taking the thread's next seq under the
// thread row's lock. It is the unit of CreateMessage and of any later group commit
// (many senders' messages in one transaction): run each call inside tx.Transaction (a
// savepoint), because on any error, errDuplicate included, the seq it took must be
// given back by rolling back. On errDuplicate the returned Stored holds only Members.
//
// Members are read after the lock is taken, so they are the members at commit time: a
// concurrent AddMember (which takes the same lock) either committed first and is seen,
// or starts the new member at this message's seq or later.
func createMessageTx(tx *gorm.DB, m chat.NewMessage, now time.Time) (chat.Stored, error) {
	var seq int64
	err := scanRow(tx, nextSeqSQL, []any{now, now, m.ThreadID, m.SenderID}, &seq)
	if errors.Is(err, sql.ErrNoRows) {
		return chat.Stored{}, errNotMember()
	} else if err != nil {
		return chat.Stored{}, fmt.Errorf("next seq: %w", err)
	}
	members, err := queryStrings(tx, threadMemberIDsSQL, m.ThreadID)
	if err != nil {
		return chat.Stored{}, fmt.Errorf("members: %w", err)
	}
	if !slices.Contains(members, m.SenderID) {
		// Removed after the EXISTS above was evaluated, while we waited for the lock.
		return chat.Stored{}, errNotMember()
	}
	msg := chat.Message{
		ID: chat.NewID(), ThreadID: m.ThreadID, Seq: seq, SenderID: m.SenderID,
		ClientMsgID: m.ClientMsgID, Body: m.Body, CreatedAt: now,
	}
	var stored int64
	err = scanRow(tx, insertMessageSQL, []any{msg.ID, msg.ThreadID, msg.Seq, msg.SenderID, msg.ClientMsgID, msg.Body, msg.CreatedAt}, &stored)
	if errors.Is(err, sql.ErrNoRows) {
		return chat.Stored{Members: members}, errDuplicate
	} else if err != nil {
		return chat.Stored{}, fmt.Errorf("insert: %w", err)
	}
	return chat.Stored{Message: msg, Created: true, Members: members}, nil
}

// createMessageOneTrip stores a message with one call of store_message (migration
// 0002) in autocommit: one network round trip and one commit.
func (d *DB) createMessageOneTrip(ctx context.Context, m chat.NewMessage) (chat.Stored, error) {
	now := d.nowUTC()
	msg := chat.Message{ID: chat.NewID(), ThreadID: m.ThreadID, SenderID: m.SenderID, ClientMsgID: m.ClientMsgID, Body: m.Body, CreatedAt: now}
	var members string
	// database/sql, not gorm: this runs once per message, and gorm's statement clone
	// and callbacks were the largest allocation on the send path.
	err := d.sqlDB.QueryRowContext(ctx, `SELECT seq, members FROM store_message($1, $2, $3, $4, $5, $6)`,
		msg.ID, m.ThreadID, m.SenderID, m.ClientMsgID, m.Body, now).Scan(&msg.Seq, &members)
	switch {
	case err == nil:
		return chat.Stored{Message: msg, Created: true, Members: strings.Split(members, ",")}, nil
	case sqlState(err) == "SB001":
		return chat.Stored{}, errNotMember()
	case isUniqueViolation(err):
		first, ferr := d.messageByClientMsgID(ctx, m.SenderID, m.ClientMsgID)
		if ferr != nil {
			return chat.Stored{}, fmt.Errorf("create message: read the first of a repeat: %w", ferr)
		}
		ids, ferr := d.MemberIDs(ctx, m.ThreadID)
		if ferr != nil && chat.ErrorCode(ferr) != chat.ENotFound {
			return chat.Stored{}, fmt.Errorf("create message: members: %w", ferr)
		}
		return chat.Stored{Message: first, Created: false, Members: ids}, nil
	default:
		return chat.Stored{}, fmt.Errorf("create message in thread %s: %w", m.ThreadID, err)
	}
}

const messageColumns = `SELECT id, thread_id, seq, sender_id, client_msg_id, body, created_at FROM messages`

// messageByClientMsgID returns the sender's message with that client_msg_id.
func (d *DB) messageByClientMsgID(ctx context.Context, senderID, clientMsgID string) (chat.Message, error) {
	msgs, err := queryMessages(d.gdb.WithContext(ctx), messageColumns+` WHERE sender_id = ? AND client_msg_id = ?`, senderID, clientMsgID)
	if err != nil {
		return chat.Message{}, err
	}
	if len(msgs) == 0 {
		return chat.Message{}, sql.ErrNoRows
	}
	return msgs[0], nil
}

// MessagesAfter returns up to limit messages of the thread with seq > afterSeq (and
// seq <= upTo when upTo > 0) in ascending seq, and whether more follow (within upTo).
// Returns chat.EInvalid for limit < 1. The caller checks membership.
func (d *DB) MessagesAfter(ctx context.Context, threadID string, afterSeq, upTo int64, limit int) ([]chat.Message, bool, error) {
	if limit < 1 {
		return nil, false, chat.Errorf(chat.EInvalid, "limit must be at least 1")
	}
	if !chat.ValidID(threadID) {
		return []chat.Message{}, false, nil
	}
	q := messageColumns + ` WHERE thread_id = ? AND seq > ?`
	args := []any{threadID, afterSeq}
	if upTo > 0 {
		q += ` AND seq <= ?`
		args = append(args, upTo)
	}
	q += ` ORDER BY seq LIMIT ?`
	args = append(args, limit+1) // one more than asked tells whether more follow
	msgs, err := queryMessages(d.gdb.WithContext(ctx), q, args...)
	if err != nil {
		return nil, false, fmt.Errorf("messages of thread %s after %d: %w", threadID, afterSeq, err)
	}
	if len(msgs) > limit {
		return msgs[:limit], true, nil
	}
	return msgs, false, nil
}

// MessagesBefore returns the newest up to limit messages of the thread with seq <
// beforeSeq, in ascending seq, and whether older ones exist. Returns chat.EInvalid for
// limit < 1. The caller checks membership.
func (d *DB) MessagesBefore(ctx context.Context, threadID string, beforeSeq int64, limit int) ([]chat.Message, bool, error) {
	if limit < 1 {
		return nil, false, chat.Errorf(chat.EInvalid, "limit must be at least 1")
	}
	if !chat.ValidID(threadID) {
		return []chat.Message{}, false, nil
	}
	msgs, err := queryMessages(d.gdb.WithContext(ctx), messageColumns+` WHERE thread_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?`,
		threadID, beforeSeq, limit+1)
	if err != nil {
		return nil, false, fmt.Errorf("messages of thread %s before %d: %w", threadID, beforeSeq, err)
	}
	more := len(msgs) > limit
	if more {
		msgs = msgs[:limit]
	}
	slices.Reverse(msgs)
	return msgs, more, nil
}

// queryMessages runs a query selecting messageColumns.
func queryMessages(db *gorm.DB, q string, args ...any) ([]chat.Message, error) {
	rows, err := db.Raw(q, args...).Rows()
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	msgs := []chat.Message{}
	for rows.Next() {
		var m chat.Message
		if err := rows.Scan(&m.ID, &m.ThreadID, &m.Seq, &m.SenderID, &m.ClientMsgID, &m.Body, &m.CreatedAt); err != nil {
			return nil, err
		}
		m.CreatedAt = m.CreatedAt.UTC()
		msgs = append(msgs, m)
	}
	return msgs, rows.Err()
}
