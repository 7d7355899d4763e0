package ws

import (
	"context"

	"golang.org/x/time/rate"

	"github.com/switchboard-chat/switchboard/pkg/chat"
)

// handle answers one decoded client frame. It runs on the socket's reader goroutine,
// so frames of one socket are handled in order: pipelined sends get increasing seq.
func (h *Hub) handle(ctx context.Context, c *Conn, f *InFrame) {
	switch f.Type {
	case "send":
		h.handleSend(ctx, c, f)
	case "ack":
		h.handleAck(ctx, c, f)
	case "sync":
		h.handleSync(ctx, c, f)
	case "typing":
		h.handleTyping(ctx, c, f)
	case "ping":
		c.enqueue(pongOut)
	}
}

func (h *Hub) handleSend(ctx context.Context, c *Conn, f *InFrame) {
	st, err := h.svc.Send(ctx, c.sess, chat.SendRequest{ThreadID: f.ThreadID, ClientMsgID: f.ClientMsgID, Body: *f.Body})
	if err != nil {
		code := chat.ErrorCode(err)
		if code == chat.EInternal {
			h.log.Error("send", "conn_id", c.id, "err", err)
		}
		h.metrics.Sends.WithLabelValues(code).Inc()
		c.sendError(f.ClientMsgID, code, chat.ErrorMessage(err))
		return
	}
	if st.Created {
		h.metrics.Sends.WithLabelValues("created").Inc()
	} else {
		h.metrics.Sends.WithLabelValues("repeat").Inc()
	}
	c.enqueue(newFrame("sent", encode(sentFrame{Type: "sent", ClientMsgID: f.ClientMsgID, Message: &st.Message})))
	c.noteSent(&st.Message)
	h.svc.Deliver(ctx, st, c.id)
}

func (h *Hub) handleAck(ctx context.Context, c *Conn, f *InFrame) {
	seq := *f.Seq
	if last, known := c.position(f.ThreadID); known && seq <= last {
		h.acks.Add(f.ThreadID, c.user.ID, seq)
		return
	}
	if !chat.ValidID(f.ThreadID) {
		c.sendError("", chat.ENotMember, "you are not a member of that thread")
		return
	}
	sctx, cancel := h.svc.StoreContext(ctx)
	m, err := h.svc.Store.Membership(sctx, f.ThreadID, c.user.ID)
	cancel()
	switch {
	case chat.ErrorCode(err) == chat.ENotFound:
		c.sendError("", chat.ENotMember, "you are not a member of that thread")
	case err != nil:
		c.sendError("", chat.EUnavailable, "database is unavailable, try again")
	case seq > m.LastSeq:
		c.sendError("", chat.EInvalid, "ack is beyond the thread's last_seq")
	default:
		h.acks.Add(f.ThreadID, c.user.ID, seq)
	}
}

func (h *Hub) handleSync(ctx context.Context, c *Conn, f *InFrame) {
	q := chat.HistoryQuery{Limit: 50}
	if f.AfterSeq != nil {
		q.AfterSeq = *f.AfterSeq
	}
	if f.Limit != nil {
		q.Limit = *f.Limit
	}
	msgs, more, err := h.svc.History(ctx, c.sess, f.ThreadID, q)
	if err != nil {
		code := chat.ErrorCode(err)
		if code == chat.ENotFound {
			code = chat.ENotMember
		}
		c.sendError(f.ID, code, chat.ErrorMessage(err))
		return
	}
	if msgs == nil {
		msgs = []chat.Message{}
	}
	c.enqueue(newFrame("sync_result", encode(syncResultFrame{Type: "sync_result", ID: f.ID, ThreadID: f.ThreadID, Messages: msgs, HasMore: more})))
}

func (h *Hub) handleTyping(ctx context.Context, c *Conn, f *InFrame) {
	if c.typing == nil { // only the reader goroutine gets here
		c.typing = rate.NewLimiter(rate.Limit(h.cfg.TypingRate), int(max(1, h.cfg.TypingRate)))
	}
	if !c.typing.Allow() {
		return // the contract drops typing floods silently
	}
	if !chat.ValidID(f.ThreadID) {
		c.sendError("", chat.ENotMember, "you are not a member of that thread")
		return
	}
	sctx, cancel := h.svc.StoreContext(ctx)
	members, err := h.svc.Store.MemberIDs(sctx, f.ThreadID)
	cancel()
	if err != nil || !contains(members, c.user.ID) {
		c.sendError("", chat.ENotMember, "you are not a member of that thread")
		return
	}
	others := members[:0:0]
	for _, m := range members {
		if m != c.user.ID {
			others = append(others, m)
		}
	}
	h.svc.Deliverer.DeliverTyping(ctx, f.ThreadID, c.user.ID, others, c.id)
}
