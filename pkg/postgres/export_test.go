package postgres

import (
	"context"

	"github.com/switchboard-chat/switchboard/pkg/chat"
)

// StoreBatch stores ms as ONE batch (store_messages), as the committer would, and
// returns each message's answer: tests can craft a batch instead of hoping that
// concurrent senders form one.
// bulk picks store_messages_bulk (true) or the loop of store_messages.
func (d *DB) StoreBatch(ctx context.Context, ms []chat.NewMessage, bulk bool) ([]chat.Stored, []error, error) {
	old := bulkBatch.Load()
	defer bulkBatch.Store(old)
	if bulk {
		bulkBatch.Store(1)
	} else {
		bulkBatch.Store(int32(len(ms) + 1)) //nolint:gosec // a test batch of a few messages
	}
	batch := make([]*sendReq, len(ms))
	for i, m := range ms {
		batch[i] = &sendReq{ctx: ctx, m: m}
	}
	res, err := d.createMessages(ctx, batch)
	if err != nil {
		return nil, nil, err
	}
	sts, errs := make([]chat.Stored, len(res)), make([]error, len(res))
	for i, r := range res {
		sts[i], errs[i] = r.st, r.err
	}
	return sts, errs, nil
}

// SetAckChunk makes this DB's PostgreSQL ack flushes go in calls of n acks.
func (d *DB) SetAckChunk(n int) { d.ackChunk = n }

// SetMembershipsChunk makes this DB's MembershipsOf ask for n users per query.
func (d *DB) SetMembershipsChunk(n int) { d.membershipsChunk = n }

// SeqScans returns how many sequential scans of table PostgreSQL has counted, this
// connection's included (it forces their flush first): run it on a DB with
// MaxOpenConns 1 to see the scans of the calls made before it.
func (d *DB) SeqScans(ctx context.Context, table string) (int64, error) {
	if _, err := d.sqlDB.ExecContext(ctx, `SELECT pg_stat_force_next_flush()`); err != nil {
		return 0, err
	}
	var n int64
	err := d.sqlDB.QueryRowContext(ctx, `SELECT coalesce(seq_scan, 0) FROM pg_stat_user_tables WHERE relname = $1`, table).Scan(&n)
	return n, err
}
