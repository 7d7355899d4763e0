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
