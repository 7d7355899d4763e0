package ws

import (
	"context"
	"errors"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"

	"github.com/switchboard-chat/switchboard/pkg/chat"
)

// Close codes of the contract beyond those gorilla names.
const (
	CloseSessionEnded = 4001
	CloseHostShutdown = websocket.CloseServiceRestart // 1012
	CloseTooSlow      = websocket.CloseTryAgainLater  // 1013
	closeWriteWait    = time.Second
	// closeLinger is how long a closed socket waits for its peer to answer the close
	// frame before the connection ends anyway (awaitPeerClose).
	closeLinger = time.Second
	writeWait   = 10 * time.Second
)

// outFrame is one queued frame. Broadcast frames are shared by every socket they go to
// (encoded once); the queue holds pointers so an idle socket's queue costs a few words.
//
// The bytes are written with WriteMessage, which copies them into a write buffer
// borrowed from the upgrader's pool, rather than with a websocket.PreparedMessage:
// without compression, preparing saves a socket no more than that copy, and it builds
// each message's frame on a throwaway connection with a 4 KiB buffer (some 5 KiB of
// garbage for every hello, sent or error frame, each of which goes to one socket).
type outFrame struct {
	// wire is the whole server-to-client frame (header and payload; a server never
	// masks), built once when the frame is made and written as is to every socket it
	// goes to: a message fanned out to a hundred local sockets is framed once, not
	// copied into a write buffer per socket behind a fresh message writer each time.
	wire []byte
	kind string // frame type, for metrics
}

// The frames that are the same for every socket.
var (
	syncedOut = newFrame("synced", syncedFrame)
	pongOut   = newFrame("pong", pongFrame)
)

func newFrame(kind string, data []byte) *outFrame {
	wire := appendFrameHeader(make([]byte, 0, 10+len(data)), len(data))
	wire = append(wire, data...)
	return &outFrame{wire: wire, kind: kind}
}

// Conn is one client socket: a reader goroutine (for as long as the socket is open), a
// writer goroutine only while frames go out (see queue), a timer for pings, a bounded
// send queue, and the per-thread position that keeps live messages in seq order.
// Everything else is made on first use, so that an idle socket stays small.
//
// Lock order: Hub shard lock, then Conn.mu, then the queue's lock; never the other way.
type Conn struct {
	hub     *Hub
	ws      *websocket.Conn
	cork    *corkConn // ws's connection, through which the writer writes data frames
	id      string
	user    chat.User
	sess    chat.Session
	since   time.Time
	q       queue
	done    chan struct{}
	closing sync.Once
	// toldUnavailable: catch-up has told the client it waits for the database (the
	// start goroutine's only), so a flapping database costs it one error frame.
	toldUnavailable bool
	// lingerUntil (unix nanos, set by finish) is when a closing socket stops waiting
	// for its peer's close frame: fixed, so that pongs the peer keeps sending cannot
	// push it back.
	lingerUntil atomic.Int64
	// Guarded by q.mu, and released by Close: the timer that pings the client every
	// PingInterval (see ping), and the cancel functions of the contexts catch-up and
	// the client's requests run under. Those contexts are made when needed and
	// dropped after, so an idle socket holds none.
	pinger      *time.Timer
	setupCancel context.CancelFunc
	reqCancel   context.CancelFunc

	typing *rate.Limiter
	badAt  []time.Time // times of recent bad frames, for the 1008 rule

	mu sync.Mutex
	// syncing is true from creation until catch-up has pushed everything missed; live
	// messages meanwhile only raise pending, and catch-up fetches them in order.
	syncing bool
	pending map[string]int64
	// lastSeq is, per thread, the highest seq queued to this socket in order.
	lastSeq map[string]int64
	// held keeps, per thread, messages that overtook an earlier one (another sender's
	// delivery still on its way), in seq order, until the gap closes; the hub fills
	// gaps older than a few milliseconds from the store. A nil frame stands for this
	// socket's own message, answered with `sent`, which only moves the position.
	held     map[string][]heldMsg
	heldN    int
	heldFrom time.Time // when the oldest held message arrived
	// own lists, per thread, the seqs of this socket's own messages (answered `sent`)
	// that its position could not take: sent while catching up, or in a thread it had
	// not seen yet (a new conversation). A fill or catch-up that later brings them from
	// the store skips them: the sending connection gets `sent`, never `message`
	// (contract section 3).
	own  map[string][]int64
	ownN int
}

// maxOwn bounds a socket's own list; past it, a fill may give the sender its own
// message, which clients drop by id anyway.
const maxOwn = 64

// heldMsg is a message waiting for its predecessors.
type heldMsg struct {
	seq int64
	f   *outFrame
}

// maxHeld bounds the messages one socket holds back; past it the gap is filled from the
// store at once.
const maxHeld = 64

// ID returns the connection id sent in `hello`.
func (c *Conn) ID() string { return c.id }

// UserID returns the id of the connection's user.
func (c *Conn) UserID() string { return c.user.ID }

// Info returns the connection's presence entry.
func (c *Conn) Info() chat.Connection {
	return chat.Connection{UserID: c.user.ID, HostID: c.hub.cfg.HostID, ConnID: c.id, Since: c.since, Instance: c.hub.cfg.Instance}
}

// enqueue queues a live frame without ever waiting: a socket whose queue is full is too
// slow and is closed with 1013, so one slow reader never holds up the sender.
func (c *Conn) enqueue(f *outFrame) bool {
	switch c.push(f) {
	case pushed:
		c.hub.metrics.FramesOut.WithLabelValues(f.kind).Inc()
		return true
	case pushClosed:
		return false
	}
	c.hub.metrics.SlowClosed.Inc()
	c.hub.log.Info("socket too slow, closing", "conn_id", c.id, "user_id", c.user.ID, "queued", c.q.max)
	go c.Close(CloseTooSlow, "too slow to read")
	return false
}

// push queues f and starts the writer when none runs.
func (c *Conn) push(f *outFrame) pushResult {
	res, start := c.q.push(f)
	if start {
		go c.writeLoop()
	}
	return res
}

// enqueueWait queues a frame, waiting for room: catch-up pushes pages this way so a
// large backlog flows at the client's pace instead of overflowing the queue.
func (c *Conn) enqueueWait(ctx context.Context, f *outFrame) bool {
	for {
		switch c.push(f) {
		case pushed:
			c.hub.metrics.FramesOut.WithLabelValues(f.kind).Inc()
			return true
		case pushClosed:
			return false
		}
		if !c.q.waitBelow(ctx, c.done, c.q.max-1) {
			return false
		}
	}
}

// waitQueueBelow blocks until at most n frames wait: catch-up leaves room this way for
// what the socket's own requests bring (sent, pong, errors), which is never waited for.
func (c *Conn) waitQueueBelow(ctx context.Context, n int) bool {
	return c.q.waitBelow(ctx, c.done, n)
}

// Close writes a close frame with code (1 s deadline) and ends the connection,
// dropping whatever frames are still queued. Safe to call from any goroutine, any
// number of times; the first Close (or closeAfterQueued) decides.
//
// Closes that drop the queue: 1013 (the queue is the problem), 1012 (host shutdown:
// the drain has its own schedule, and catch-up on the next host resends what the
// client did not get), 4001 (the session ended: nothing more is owed to it), 1000 (the
// peer went away or fell silent) and 1009 (gorilla has already written that close
// frame, and no data frame may follow it).
func (c *Conn) Close(code int, reason string) { c.close(code, reason, false) }

// closeAfterQueued closes with code a socket whose own frames broke the rules (1008
// too many bad frames, 1003 binary frame, 1007 invalid UTF-8): the frames already
// queued (the error frames each bad frame is owed among them) go out first, then the
// close frame. Nothing new is queued once it is called. The queue is bounded and the
// writer writes it under the usual write deadline (writeWait from now, at most), so
// a client that does not read holds the socket no longer than that, plus the close
// frame's closeWriteWait.
func (c *Conn) closeAfterQueued(code int, reason string) { c.close(code, reason, true) }

func (c *Conn) close(code int, reason string, afterQueued bool) {
	c.closing.Do(func() {
		c.q.mu.Lock()
		flush, start := false, false
		if afterQueued {
			flush, start = c.q.closeAfterLocked(&finalClose{code: code, reason: reason, deadline: time.Now().Add(writeWait)})
		} else {
			c.q.closeLocked()
		}
		pinger, setup, req := c.pinger, c.setupCancel, c.reqCancel
		c.pinger, c.setupCancel, c.reqCancel = nil, nil, nil
		c.q.mu.Unlock()
		close(c.done)
		if pinger != nil {
			pinger.Stop()
		}
		for _, cancel := range []context.CancelFunc{setup, req} {
			if cancel != nil {
				cancel()
			}
		}
		c.hub.metrics.Closes.WithLabelValues(strconv.Itoa(code)).Inc()
		if flush {
			// The writer writes what is queued, then the close frame (finish).
			if start {
				go c.writeLoop()
			}
			return
		}
		c.finish(code, reason)
	})
}

// finish writes the close frame and ends the connection.
func (c *Conn) finish(code int, reason string) {
	// One deadline for all that is left: the writer may be blocked in a gathered
	// write to a peer that stopped reading, holding the lock seal needs, until its
	// own deadline (writeWait); moving the connection's deadline ends that write
	// too, so closing takes at most closeWriteWait.
	dl := time.Now().Add(closeWriteWait)
	_ = c.cork.SetWriteDeadline(dl)
	c.cork.seal() // no data frame may follow the close frame
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), dl)
	// The reader ends the connection (awaitPeerClose) once the peer answers the close
	// frame, or closeLinger from now.
	c.lingerUntil.Store(time.Now().Add(closeLinger).UnixNano())
	c.extendRead(0)
}

// extendRead gives the peer d more to send something. A closing socket's peer gets
// until lingerUntil instead, however often this is called; finish may have set that
// deadline just before.
func (c *Conn) extendRead(d time.Duration) {
	if !c.closed() {
		_ = c.ws.SetReadDeadline(time.Now().Add(d))
		if !c.closed() {
			return
		}
	}
	until := c.lingerUntil.Load()
	if until == 0 { // finish is about to set it
		until = time.Now().Add(closeLinger).UnixNano()
	}
	_ = c.ws.SetReadDeadline(time.Unix(0, until))
}

// awaitPeerClose ends the connection once the peer has answered the close frame (or
// gone, or closeLinger passed), discarding what it sent meanwhile. Closing with the
// peer's frames unread would make the kernel answer with a reset instead of a FIN,
// and a reset can destroy the close frame before the peer reads it: the client then
// sees 1006 instead of 4001 or 1012, and retries a dead session or waits out a backoff
// (TestCloseCodeReachesABusyClient). Runs on the reader, after readLoop.
func (c *Conn) awaitPeerClose() {
	defer func() { _ = c.ws.Close() }()
	for {
		// Once a read has failed (the peer's close frame, EOF, the deadline), gorilla
		// answers every later one with the same error at once.
		if _, _, err := c.ws.NextReader(); err != nil {
			return
		}
	}
}

// closed reports whether Close has begun: a write that fails then was cut short by
// Close, not by a slow peer.
func (c *Conn) closed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// startPings arms the ping timer. A timer rather than a ticker in the writer, so that
// an idle socket needs no goroutine between pings.
func (c *Conn) startPings() {
	c.q.mu.Lock()
	defer c.q.mu.Unlock()
	if !c.q.closed {
		c.pinger = time.AfterFunc(c.hub.cfg.PingInterval, c.ping)
	}
}

// ping runs on the timer's goroutine. WriteControl may run beside the writer's data
// frames (gorilla allows it), so a ping needs no writer.
func (c *Conn) ping() {
	if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeWait)); err != nil {
		c.Close(websocket.CloseGoingAway, "")
		return
	}
	// Under the queue's lock, so that a Close in between (which stops the timer)
	// is not undone.
	c.q.mu.Lock()
	if c.pinger != nil {
		c.pinger.Reset(c.hub.cfg.PingInterval)
	}
	c.q.mu.Unlock()
}

// newContext returns a context that Close cancels, keeping its cancel function in
// *slot (under q.mu); endContext cancels it and lets it go.
func (c *Conn) newContext(slot *context.CancelFunc) context.Context {
	ctx, cancel := context.WithCancel(context.Background()) //nolint:gosec // kept in *slot, called by endContext or Close
	c.q.mu.Lock()
	defer c.q.mu.Unlock()
	if c.q.closed {
		cancel()
	} else {
		*slot = cancel
	}
	return ctx
}

// endContext cancels the context newContext kept in *slot, if Close has not.
func (c *Conn) endContext(slot *context.CancelFunc) {
	c.q.mu.Lock()
	cancel := *slot
	*slot = nil
	c.q.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// writeLoop writes data frames until the queue stays empty for writerLinger or the
// socket closes; only one runs at a time per socket (queue.push sees to it).
func (c *Conn) writeLoop() {
	var batch []*outFrame
	var linger *time.Timer
	defer func() {
		if linger != nil {
			linger.Stop()
		}
	}()
	c.q.mu.Lock()
	wake := c.q.wake
	c.q.mu.Unlock()
	for {
		var fin *finalClose
		batch, fin = c.q.take(batch[:0])
		if len(batch) == 0 && fin != nil {
			// Everything queued before closeAfterQueued is written: now the close.
			c.finish(fin.code, fin.reason)
			return
		}
		if len(batch) == 0 {
			if linger == nil {
				linger = time.NewTimer(c.hub.linger)
			} else {
				linger.Reset(c.hub.linger)
			}
			select {
			case <-wake:
				continue
			case <-linger.C:
				if c.q.stopIfEmpty() {
					return
				}
				continue
			case <-c.done:
				if c.q.stopIfEmpty() {
					return
				}
				continue // closeAfterQueued: the close frame is owed
			}
		}
		opened := false
		// Several frames waiting go to the kernel in one write (see corkConn).
		corked := len(batch) > 1 && corking.Load()
		if corked {
			c.cork.cork()
		}
		// Data frames bypass gorilla's writer, so the deadline goes on the connection.
		start := time.Now()
		dl := start.Add(writeWait)
		if fin != nil && fin.deadline.Before(dl) {
			dl = fin.deadline // closing: the queue is written within writeWait of the close
		}
		_ = c.cork.SetWriteDeadline(dl)
		for _, f := range batch {
			opened = opened || f == syncedOut
			err := c.cork.writeFrame(f.wire)
			if err == nil && corked && f == batch[len(batch)-1] {
				err = c.cork.uncork()
			}
			if err != nil {
				if corked {
					_ = c.cork.uncork()
				}
				if !errors.Is(err, websocket.ErrCloseSent) && !errors.Is(err, errSealed) && !c.closed() {
					c.hub.metrics.SlowClosed.Inc()
					c.Close(CloseTooSlow, "write failed")
				}
				if fin := c.q.owed(); fin != nil {
					// The queue could not be written in time: close anyway.
					c.finish(fin.code, fin.reason)
				}
				// The queue is closed (or closing): no writer starts again.
				return
			}
		}
		// Per frame: a corked batch's cost is shared by its frames.
		per := time.Since(start).Seconds() / float64(len(batch))
		for range batch {
			c.hub.stageWrite.Observe(per)
		}
		clear(batch)
		if cap(batch) > 64 {
			batch = nil
		}
		// `synced` ends the opening exchange; most sockets then stay quiet for a
		// while, so the writer ends now rather than linger. A socket that gets
		// traffic starts a writer again, which lingers.
		if opened && c.q.stopIfEmpty() {
			return
		}
	}
}

// readLoop reads frames until the socket fails or closes. The context requests run
// under is made with the first request, so a socket that only listens has none.
func (c *Conn) readLoop() {
	var ctx context.Context
	defer c.endContext(&c.reqCancel)
	h := c.hub
	c.ws.SetReadLimit(int64(h.cfg.FrameBytes))
	c.extendRead(h.cfg.PongTimeout)
	c.ws.SetPongHandler(func(string) error {
		c.extendRead(h.cfg.PongTimeout)
		return nil
	})
	for {
		typ, data, err := c.ws.ReadMessage()
		if c.closed() {
			// This end closed the socket: what the peer sent since is not acted on
			// (awaitPeerClose discards the rest), and its silence is expected.
			return
		}
		if err != nil {
			switch {
			case errors.Is(err, websocket.ErrReadLimit):
				// gorilla has already written close 1009.
				c.Close(websocket.CloseMessageTooBig, "frame too big")
			case isTimeout(err):
				// Nothing, not even a pong, for PongTimeout: a half-open connection
				// (the client's network vanished without a FIN).
				h.log.Info("socket silent, closing", "conn_id", c.id, "user_id", c.user.ID, "timeout", h.cfg.PongTimeout)
				c.Close(websocket.CloseNormalClosure, "")
			default:
				c.Close(websocket.CloseNormalClosure, "")
			}
			return
		}
		c.extendRead(h.cfg.PongTimeout)
		if typ == websocket.BinaryMessage {
			c.closeAfterQueued(websocket.CloseUnsupportedData, "binary frames are not supported")
			return
		}
		if !utf8.Valid(data) {
			c.closeAfterQueued(websocket.CloseInvalidFramePayloadData, "invalid UTF-8")
			return
		}
		f, err := DecodeFrame(data)
		if err != nil {
			h.metrics.FramesIn.WithLabelValues("invalid").Inc()
			var fe *FrameError
			errors.As(err, &fe)
			if !c.sendError(fe.Ref, fe.Code, fe.Message) {
				return
			}
			continue
		}
		h.metrics.FramesIn.WithLabelValues(f.Type).Inc()
		if ctx == nil {
			ctx = c.newContext(&c.reqCancel)
		}
		h.handle(ctx, c, f)
		if c.closed() {
			// The frame was the bad one too many (sendError closed with 1008), or the
			// socket closed meanwhile: read no further frame.
			return
		}
	}
}

// isTimeout reports whether a read failed on its deadline. gorilla wraps the
// connection's error in a type of its own that keeps Timeout but not Unwrap, so
// errors.Is(err, os.ErrDeadlineExceeded) misses it.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// badFrame counts a bad frame; more than BadFrames in BadFrameWindow closes the socket
// with 1008 and returns false.
func (c *Conn) badFrame() bool {
	now := time.Now()
	cut := now.Add(-badFrameWindow)
	keep := c.badAt[:0]
	for _, t := range c.badAt {
		if t.After(cut) {
			keep = append(keep, t)
		}
	}
	c.badAt = append(keep, now)
	if len(c.badAt) > badFrameLimit {
		c.closeAfterQueued(websocket.ClosePolicyViolation, "too many bad frames")
		return false
	}
	return true
}

const (
	badFrameLimit  = 20
	badFrameWindow = 10 * time.Second
)

// sendError answers with an error frame. An error that answers a bad frame (see
// badFrameCode) counts toward the 1008 rule wherever it was found (decoding, the
// handlers, the service): the one too many is answered by closing the socket with 1008
// instead, and sendError returns false. Such errors are only ever answered on the
// reader goroutine, which alone touches badAt.
func (c *Conn) sendError(ref, code, msg string) bool {
	if badFrameCode(code) && !c.badFrame() {
		return false
	}
	c.enqueue(newFrame("error", encode(errorFrame{Type: "error", Ref: ref, Code: code, Message: msg})))
	return true
}

// badFrameCode reports whether an error code answers a bad frame (contract §3:
// invalid JSON, an unknown type, a missing or bad field), which counts toward the 1008
// rule. rate_limited, not_member, unavailable answer well-formed frames; so does
// too_large, which §8 lists with the limits (a body over 8,192 bytes), not as a bad field.
func badFrameCode(code string) bool {
	switch code {
	case codeInvalidFrame, codeUnknownType, chat.EInvalid:
		return true
	}
	return false
}

// deliverLive queues a live message (frame f, shared) in seq order. A message that
// overtook an earlier one is held back until the gap closes; ok is false when the gap
// must be filled from the store now (an unknown thread, or too much held back).
func (c *Conn) deliverLive(m *chat.Message, f *outFrame) (gapFrom int64, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.syncing {
		c.notePendingLocked(m.ThreadID, m.Seq)
		return 0, true
	}
	last, known := c.lastSeq[m.ThreadID]
	switch {
	case known && m.Seq <= last:
		return 0, true // already queued: a repeat or a late copy of a filled gap
	case m.Seq == last+1: // an unknown thread's last is 0: seq 1 starts it
		c.advanceLocked(m.ThreadID, m.Seq, f)
		return 0, true
	case !known:
		// A thread this socket has not seen (created or joined since catch-up) whose
		// earlier messages may still be on their way from another host: fill from the
		// member's start rather than skip them for good.
		return startUnknown, false
	case c.holdLocked(m.ThreadID, m.Seq, f):
		return 0, true
	default:
		return last, false
	}
}

// notePendingLocked records, during catch-up, that the thread has seq for catch-up to
// fetch.
func (c *Conn) notePendingLocked(threadID string, seq int64) {
	if seq <= c.pending[threadID] {
		return
	}
	if c.pending == nil {
		c.pending = map[string]int64{}
	}
	c.pending[threadID] = seq
}

// noteSent moves the thread's position past this socket's own message, answered with
// `sent` rather than `message`, so that the next message of the thread is not taken
// for a gap (and the own message never comes back as `message` from a fill).
func (c *Conn) noteSent(m *chat.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	last, known := c.lastSeq[m.ThreadID]
	switch {
	case c.syncing || !known:
		c.noteOwnLocked(m.ThreadID, m.Seq)
	case m.Seq <= last:
	case m.Seq == last+1:
		c.advanceLocked(m.ThreadID, m.Seq, nil)
	default:
		c.holdLocked(m.ThreadID, m.Seq, nil)
	}
}

func (c *Conn) noteOwnLocked(threadID string, seq int64) {
	if c.ownN >= maxOwn {
		return
	}
	if c.own == nil {
		c.own = map[string][]int64{}
	}
	c.own[threadID] = append(c.own[threadID], seq)
	c.ownN++
}

// takeOwnLocked reports whether seq is one of the socket's own messages in the thread
// (see Conn.own), and forgets it.
func (c *Conn) takeOwnLocked(threadID string, seq int64) bool {
	seqs := c.own[threadID]
	i := slices.Index(seqs, seq)
	if i < 0 {
		return false
	}
	if len(seqs) == 1 {
		delete(c.own, threadID)
	} else {
		c.own[threadID] = slices.Delete(seqs, i, i+1)
	}
	c.ownN--
	return true
}

// takeOwn is takeOwnLocked for catch-up, which does not hold c.mu.
func (c *Conn) takeOwn(threadID string, seq int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ownN > 0 && c.takeOwnLocked(threadID, seq)
}

// advanceLocked queues f (nil: nothing to queue) as seq, then every held message that
// now follows in order.
func (c *Conn) advanceLocked(threadID string, seq int64, f *outFrame) {
	if f != nil && !c.enqueue(f) {
		return
	}
	c.lastSeq[threadID] = seq
	hs := c.held[threadID]
	i := 0
	for ; i < len(hs) && hs[i].seq <= seq+1; i++ {
		if hs[i].seq <= seq {
			continue
		}
		if hs[i].f != nil && !c.enqueue(hs[i].f) {
			return
		}
		seq = hs[i].seq
		c.lastSeq[threadID] = seq
	}
	c.dropHeldLocked(threadID, i)
}

// holdLocked keeps a message that overtook an earlier one; false when too much is held.
func (c *Conn) holdLocked(threadID string, seq int64, f *outFrame) bool {
	if c.heldN >= maxHeld {
		return false
	}
	if c.held == nil {
		c.held = map[string][]heldMsg{}
	}
	hs := c.held[threadID]
	i := len(hs)
	for i > 0 && hs[i-1].seq > seq {
		i--
	}
	if i > 0 && hs[i-1].seq == seq {
		return true // already held
	}
	hs = append(hs, heldMsg{})
	copy(hs[i+1:], hs[i:])
	hs[i] = heldMsg{seq: seq, f: f}
	c.held[threadID] = hs
	if c.heldN == 0 {
		c.heldFrom = time.Now()
		c.hub.noteHeld(c)
	}
	c.heldN++
	return true
}

// dropHeldLocked forgets the first n held messages of a thread.
func (c *Conn) dropHeldLocked(threadID string, n int) {
	if n == 0 {
		return
	}
	hs := c.held[threadID]
	c.heldN -= n
	if n >= len(hs) {
		delete(c.held, threadID)
	} else {
		c.held[threadID] = append(hs[:0], hs[n:]...)
	}
}

// heldGaps returns, per thread, the highest held seq when messages have been held for
// longer than wait (the gap is then filled from the store); otherwise nil.
func (c *Conn) heldGaps(wait time.Duration) map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.heldN == 0 || time.Since(c.heldFrom) < wait {
		return nil
	}
	out := make(map[string]int64, len(c.held))
	for t, hs := range c.held {
		if len(hs) > 0 {
			out[t] = hs[len(hs)-1].seq
		}
	}
	return out
}

// startUnknown is deliverLive's gap start for a thread the socket has no position
// in: the hub looks the member's start up in the store.
const startUnknown = -1

// queueInOrder queues fetched messages beyond the thread's position, in order. Used by
// gap fills and hand-off repair. A message this socket holds already goes out with its
// held frame (or, for its own message, not at all); others are encoded here.
func (c *Conn) queueInOrder(threadID string, msgs []chat.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.syncing {
		if n := len(msgs); n > 0 {
			c.notePendingLocked(threadID, msgs[n-1].Seq)
		}
		return
	}
	last := c.lastSeq[threadID]
	for i := range msgs {
		m := &msgs[i]
		if m.Seq <= last {
			continue
		}
		if m.Seq != last+1 && last != 0 {
			break // the store is missing a seq: leave it for the next fill
		}
		var f *outFrame
		own := false
		for _, h := range c.held[threadID] {
			if h.seq == m.Seq {
				f, own = h.f, h.f == nil
				break
			}
		}
		if f == nil && !own && c.ownN > 0 {
			own = c.takeOwnLocked(threadID, m.Seq)
		}
		if f == nil && !own {
			f = newFrame("message", EncodeMessage(m))
		}
		if f != nil && !c.enqueue(f) {
			return
		}
		last = m.Seq
	}
	c.lastSeq[threadID] = last
	// Whatever is held up to the new position is out (or was own): drop it, and go
	// on with held messages that now follow in order.
	hs := c.held[threadID]
	n := 0
	for n < len(hs) && hs[n].seq <= last {
		n++
	}
	c.dropHeldLocked(threadID, n)
	c.advanceLocked(threadID, last, nil)
}

// position returns the thread's position and whether it is known.
func (c *Conn) position(threadID string) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.syncing {
		return 0, false
	}
	v, ok := c.lastSeq[threadID]
	return v, ok
}
