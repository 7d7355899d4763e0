package clustertest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-chat/switchboard/pkg/chat"
)

// Password is the password of every user the helpers create.
const Password = "correct horse battery"

// User is an account with one logged-in session.
type User struct {
	ID       string
	Username string
	Token    string
}

// API makes one JSON call: body (if not nil) is sent as JSON, a 2xx answer is decoded
// into out (if not nil). It returns the status and the raw answer.
func API(tb testing.TB, method, url, token string, body, out any) (int, []byte) {
	tb.Helper()
	status, raw, err := api(method, url, token, body, out)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, url, err)
	}
	return status, raw
}

func api(method, url, token string, body, out any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, err
	}
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, raw, fmt.Errorf("decode %s: %w", raw, err)
		}
	}
	return resp.StatusCode, raw, nil
}

// Register creates an account through h's HTTP API.
func Register(tb testing.TB, h *Host, username string) chat.User {
	tb.Helper()
	var out struct {
		User chat.User `json:"user"`
	}
	st, raw := API(tb, http.MethodPost, h.PublicURL()+"/api/v1/auth/register", "", map[string]string{"username": username, "password": Password}, &out)
	if st != http.StatusCreated {
		tb.Fatalf("register %s: %d %s", username, st, raw)
	}
	return out.User
}

// Login opens a session through h and returns its token.
func Login(tb testing.TB, h *Host, username string) *User {
	tb.Helper()
	var out struct {
		Token string    `json:"token"`
		User  chat.User `json:"user"`
	}
	st, raw := API(tb, http.MethodPost, h.PublicURL()+"/api/v1/auth/login", "", map[string]string{"username": username, "password": Password}, &out)
	if st != http.StatusOK || out.Token == "" {
		tb.Fatalf("login %s: %d %s", username, st, raw)
	}
	return &User{ID: out.User.ID, Username: out.User.Username, Token: out.Token}
}

// NewUser registers username through h and logs it in.
func NewUser(tb testing.TB, h *Host, username string) *User {
	tb.Helper()
	Register(tb, h, username)
	return Login(tb, h, username)
}

// CreateThread creates a thread through h as u, with the named other members.
func CreateThread(tb testing.TB, h *Host, u *User, name string, members ...string) chat.Thread {
	tb.Helper()
	var out struct {
		Thread chat.Thread `json:"thread"`
	}
	if members == nil {
		members = []string{}
	}
	st, raw := API(tb, http.MethodPost, h.PublicURL()+"/api/v1/threads", u.Token, map[string]any{"name": name, "members": members}, &out)
	if st != http.StatusCreated {
		tb.Fatalf("create thread %s: %d %s", name, st, raw)
	}
	return out.Thread
}

// History returns every message of a thread as stored, through h's HTTP API.
func History(tb testing.TB, h *Host, u *User, threadID string) []chat.Message {
	tb.Helper()
	var all []chat.Message
	after := int64(0)
	for {
		var out struct {
			Messages []chat.Message `json:"messages"`
			HasMore  bool           `json:"has_more"`
		}
		url := fmt.Sprintf("%s/api/v1/threads/%s/messages?after_seq=%d&limit=200", h.PublicURL(), threadID, after)
		st, raw := API(tb, http.MethodGet, url, u.Token, nil, &out)
		if st != http.StatusOK {
			tb.Fatalf("history: %d %s", st, raw)
		}
		all = append(all, out.Messages...)
		if !out.HasMore || len(out.Messages) == 0 {
			return all
		}
		after = out.Messages[len(out.Messages)-1].Seq
	}
}

// Presence asks h whether each user is online, as u.
func Presence(tb testing.TB, h *Host, u *User, userIDs ...string) map[string]bool {
	tb.Helper()
	url := h.PublicURL() + "/api/v1/presence?"
	for i, id := range userIDs {
		if i > 0 {
			url += "&"
		}
		url += "user_id=" + id
	}
	var out struct {
		Presence []chat.Presence `json:"presence"`
	}
	st, raw := API(tb, http.MethodGet, url, u.Token, nil, &out)
	if st != http.StatusOK {
		tb.Fatalf("presence: %d %s", st, raw)
	}
	m := map[string]bool{}
	for _, p := range out.Presence {
		m[p.UserID] = p.Online
	}
	return m
}

// Frame is one frame a client received, decoded by type.
type Frame struct {
	Type string
	At   time.Time // when the reader got it
	Raw  string

	User    chat.User     // hello
	ConnID  string        // hello
	HostID  string        // hello
	Message *chat.Message // message, sent

	ClientMsgID string // sent

	ID       string         // sync_result
	ThreadID string         // sync_result, typing
	Messages []chat.Message // sync_result
	HasMore  bool           // sync_result
	UserID   string         // typing

	Ref  string // error
	Code string // error
	Text string // error: the human message
}

func decodeFrame(data []byte, at time.Time) Frame {
	f := Frame{At: at, Raw: string(data)}
	var head struct {
		Type    string          `json:"type"`
		Message json.RawMessage `json:"message"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		f.Type = "?undecodable"
		return f
	}
	f.Type = head.Type
	var body struct {
		User        chat.User      `json:"user"`
		ConnID      string         `json:"conn_id"`
		HostID      string         `json:"host_id"`
		ClientMsgID string         `json:"client_msg_id"`
		ID          string         `json:"id"`
		ThreadID    string         `json:"thread_id"`
		Messages    []chat.Message `json:"messages"`
		HasMore     bool           `json:"has_more"`
		UserID      string         `json:"user_id"`
		Ref         string         `json:"ref"`
		Code        string         `json:"code"`
	}
	_ = json.Unmarshal(data, &body)
	f.User, f.ConnID, f.HostID, f.ClientMsgID = body.User, body.ConnID, body.HostID, body.ClientMsgID
	f.ID, f.ThreadID, f.Messages, f.HasMore, f.UserID = body.ID, body.ThreadID, body.Messages, body.HasMore, body.UserID
	f.Ref, f.Code = body.Ref, body.Code
	switch f.Type {
	case "message", "sent":
		var m chat.Message
		if json.Unmarshal(head.Message, &m) == nil {
			f.Message = &m
		}
	case "error":
		_ = json.Unmarshal(head.Message, &f.Text)
	}
	return f
}

// Client is a WebSocket client whose reader goroutine records every frame it gets.
type Client struct {
	HostID string // the host it dialed
	Hello  Frame

	conn *websocket.Conn
	wmu  sync.Mutex // one writer at a time, as gorilla requires

	mu        sync.Mutex
	frames    []Frame
	sentAt    map[string]time.Time // client_msg_id -> when Send wrote it
	sendMark  map[string]int       // client_msg_id -> frames logged when Send wrote it
	readErr   error
	closeCode int // 0 until the connection ended; -1 when it ended without a close frame

	reading sync.Once
	done    chan struct{}
}

// DialOptions are the rarer knobs of DialWith.
type DialOptions struct {
	Token  string
	Origin string // sent as the Origin header when not empty
	// NoRead leaves frames unread until StartReading: a client that stops reading.
	NoRead bool
	// RecvBuf sets the socket's receive buffer (SO_RCVBUF) before connecting, so a
	// client that does not read fills up after little data.
	RecvBuf int
	// Addr, when set, is the host:port dialed instead of the host's public listener
	// (a Proxy in front of it); the request still names the host's own address.
	Addr string
}

// Handshake is the HTTP answer to an upgrade request: 101 for a socket, else the
// refusal's status and (start of the) body.
type Handshake struct {
	Status int
	Body   []byte
}

// DialWith opens a socket to h's /ws. It returns the handshake answer either way, so
// a test can check a refused upgrade's status and error body.
func DialWith(h *Host, o DialOptions) (*Client, Handshake, error) {
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	if o.RecvBuf > 0 {
		nd := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, o.RecvBuf)
			})
			if err != nil {
				return err
			}
			return serr
		}}
		d.NetDialContext = nd.DialContext
	}
	if o.Addr != "" {
		next := d.NetDialContext
		if next == nil {
			next = new(net.Dialer).DialContext
		}
		d.NetDialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return next(ctx, network, o.Addr)
		}
	}
	hdr := http.Header{}
	if o.Token != "" {
		hdr.Set("Authorization", "Bearer "+o.Token)
	}
	if o.Origin != "" {
		hdr.Set("Origin", o.Origin)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, resp, err := d.DialContext(ctx, h.WSURL(), hdr)
	var hs Handshake
	if resp != nil {
		hs.Status = resp.StatusCode
		hs.Body, _ = io.ReadAll(io.LimitReader(resp.Body, 4096))
		_ = resp.Body.Close()
	}
	if err != nil {
		return nil, hs, err
	}
	c := &Client{HostID: h.ID, conn: conn, sentAt: map[string]time.Time{}, sendMark: map[string]int{}, done: make(chan struct{})}
	if !o.NoRead {
		c.StartReading()
	}
	return c, hs, nil
}

// Dial opens a socket to h as u, waits for `hello` and closes the socket when the
// test ends.
func Dial(tb testing.TB, h *Host, u *User) *Client {
	tb.Helper()
	c, hs, err := DialWith(h, DialOptions{Token: u.Token})
	if err != nil {
		tb.Fatalf("dial %s as %s: %v (status %d %s)", h.ID, u.Username, err, hs.Status, hs.Body)
	}
	tb.Cleanup(c.Close)
	c.Hello = c.WaitType(tb, 5*time.Second, "hello")
	if c.Hello.User.ID != u.ID || c.Hello.HostID != h.ID || c.Hello.ConnID == "" {
		tb.Fatalf("hello from %s: %s", h.ID, c.Hello.Raw)
	}
	return c
}

// DialSynced is Dial that also waits for `synced`.
func DialSynced(tb testing.TB, h *Host, u *User) *Client {
	tb.Helper()
	c := Dial(tb, h, u)
	c.WaitType(tb, 10*time.Second, "synced")
	return c
}

// StartReading starts the reader goroutine (once).
func (c *Client) StartReading() {
	c.reading.Do(func() { go c.read() })
}

func (c *Client) read() {
	defer close(c.done)
	for {
		_, data, err := c.conn.ReadMessage()
		now := time.Now()
		if err != nil {
			code := -1
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				code = ce.Code
			}
			c.mu.Lock()
			c.readErr, c.closeCode = err, code
			c.mu.Unlock()
			return
		}
		f := decodeFrame(data, now)
		c.mu.Lock()
		c.frames = append(c.frames, f)
		c.mu.Unlock()
	}
}

// Close closes the socket normally and waits for the reader to end.
func (c *Client) Close() {
	c.wmu.Lock()
	_ = c.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	c.wmu.Unlock()
	_ = c.conn.Close()
	c.StartReading()
	<-c.done
}

// Frames returns a copy of every frame received so far.
func (c *Client) Frames() []Frame {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.frames)
}

// FramesFrom returns a copy of the frames received from index i on, and the index to
// ask from next time: a reader that polls pays for the new frames only.
func (c *Client) FramesFrom(i int) ([]Frame, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i >= len(c.frames) {
		return nil, len(c.frames)
	}
	return slices.Clone(c.frames[i:]), len(c.frames)
}

// Closed returns the close code once the connection has ended (-1 when it ended
// without a close frame) and whether it has.
func (c *Client) Closed() (code int, closed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeCode, c.readErr != nil
}

// WaitClosed waits until the connection ends and returns its close code.
func (c *Client) WaitClosed(tb testing.TB, timeout time.Duration) int {
	tb.Helper()
	select {
	case <-c.done:
	case <-time.After(timeout):
		tb.Fatalf("socket on %s still open after %v", c.HostID, timeout)
	}
	code, _ := c.Closed()
	return code
}

// Done is closed when the reader has ended.
func (c *Client) Done() <-chan struct{} { return c.done }

// WaitFor polls the frame log until pred accepts it.
func (c *Client) WaitFor(tb testing.TB, timeout time.Duration, pred func([]Frame) error) {
	tb.Helper()
	CheckFor(tb, timeout, 5*time.Millisecond, func() error { return pred(c.Frames()) })
}

// WaitType waits for the first frame of type typ and returns it.
func (c *Client) WaitType(tb testing.TB, timeout time.Duration, typ string) Frame {
	tb.Helper()
	var got Frame
	c.WaitFor(tb, timeout, func(fs []Frame) error {
		for _, f := range fs {
			if f.Type == typ {
				got = f
				return nil
			}
		}
		if code, closed := c.Closed(); closed {
			return fmt.Errorf("socket on %s closed (code %d) before a %q frame", c.HostID, code, typ)
		}
		return fmt.Errorf("no %q frame on %s among %d", typ, c.HostID, len(fs))
	})
	return got
}

// Messages returns the `message` frames' messages of a thread, deduplicated by id, in
// the order they first arrived.
func (c *Client) Messages(threadID string) []chat.Message {
	return dedupe(c.Frames(), threadID, false)
}

// Held returns every message of a thread this socket has seen in any frame
// (`message`, `sent`, `sync_result`), deduplicated by id and sorted by seq: what the
// device holds.
func (c *Client) Held(threadID string) []chat.Message {
	ms := dedupe(c.Frames(), threadID, true)
	sort.Slice(ms, func(i, j int) bool { return ms[i].Seq < ms[j].Seq })
	return ms
}

func dedupe(fs []Frame, threadID string, all bool) []chat.Message {
	seen := map[string]bool{}
	var out []chat.Message
	add := func(m chat.Message) {
		if m.ThreadID == threadID && !seen[m.ID] {
			seen[m.ID] = true
			out = append(out, m)
		}
	}
	for _, f := range fs {
		switch {
		case f.Type == "message" && f.Message != nil:
			add(*f.Message)
		case all && f.Type == "sent" && f.Message != nil:
			add(*f.Message)
		case all && f.Type == "sync_result":
			for _, m := range f.Messages {
				add(m)
			}
		}
	}
	return out
}

func (c *Client) write(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return c.conn.WriteMessage(websocket.TextMessage, b)
}

// Send writes a `send` frame (it does not wait for `sent`).
func (c *Client) Send(threadID, clientMsgID, body string) error {
	c.mu.Lock()
	c.sentAt[clientMsgID] = time.Now()
	c.sendMark[clientMsgID] = len(c.frames)
	c.mu.Unlock()
	return c.write(map[string]string{"type": "send", "thread_id": threadID, "client_msg_id": clientMsgID, "body": body})
}

// SentAt is when Send wrote clientMsgID.
func (c *Client) SentAt(clientMsgID string) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sentAt[clientMsgID]
}

// WaitSent waits for the `sent` answering clientMsgID and returns its message; an
// `error` frame for it since the latest Send of that id fails the test.
func (c *Client) WaitSent(tb testing.TB, clientMsgID string, timeout time.Duration) chat.Message {
	tb.Helper()
	c.mu.Lock()
	mark := c.sendMark[clientMsgID]
	c.mu.Unlock()
	var got chat.Message
	c.WaitFor(tb, timeout, func(fs []Frame) error {
		for i, f := range fs {
			if f.Type == "error" && f.Ref == clientMsgID && i < mark {
				continue // answered an earlier attempt
			}
			if f.Type == "sent" && f.ClientMsgID == clientMsgID && f.Message != nil {
				got = *f.Message
				return nil
			}
			if f.Type == "error" && f.Ref == clientMsgID {
				return fmt.Errorf("send %s answered with an error: %s", clientMsgID, f.Raw)
			}
		}
		return fmt.Errorf("no sent for %s", clientMsgID)
	})
	return got
}

// Sent returns the `sent` frames received, by client_msg_id.
func (c *Client) Sent() map[string]Frame {
	out := map[string]Frame{}
	for _, f := range c.Frames() {
		if f.Type == "sent" {
			if _, dup := out[f.ClientMsgID]; !dup {
				out[f.ClientMsgID] = f
			}
		}
	}
	return out
}

// Ack writes an `ack` frame.
func (c *Client) Ack(threadID string, seq int64) error {
	return c.write(map[string]any{"type": "ack", "thread_id": threadID, "seq": seq})
}

// SyncAll pages a thread's history after afterSeq with `sync` frames until has_more
// is false and returns the messages.
func (c *Client) SyncAll(tb testing.TB, threadID string, afterSeq int64) []chat.Message {
	tb.Helper()
	var out []chat.Message
	for page := 0; ; page++ {
		id := fmt.Sprintf("sync-%s-%d-%d", threadID, afterSeq, page)
		if err := c.write(map[string]any{"type": "sync", "id": id, "thread_id": threadID, "after_seq": afterSeq, "limit": 200}); err != nil {
			tb.Fatalf("sync: %v", err)
		}
		var res Frame
		c.WaitFor(tb, 10*time.Second, func(fs []Frame) error {
			for _, f := range fs {
				if (f.Type == "sync_result" && f.ID == id) || (f.Type == "error" && f.Ref == id) {
					res = f
					return nil
				}
			}
			return fmt.Errorf("no sync_result %s", id)
		})
		if res.Type == "error" {
			tb.Fatalf("sync: %s", res.Raw)
		}
		out = append(out, res.Messages...)
		if !res.HasMore || len(res.Messages) == 0 {
			return out
		}
		afterSeq = res.Messages[len(res.Messages)-1].Seq
	}
}

// Conn is the underlying connection, for tests that write raw frames.
func (c *Client) Conn() *websocket.Conn { return c.conn }

// checkSeqs reports whether msgs have exactly the seqs 1..n in ascending order.
func checkSeqs(msgs []chat.Message, n int) error {
	if len(msgs) != n {
		var seqs []int64
		for _, m := range msgs {
			seqs = append(seqs, m.Seq)
		}
		if len(seqs) > 20 {
			seqs = append(seqs[:10], seqs[len(seqs)-10:]...)
		}
		return fmt.Errorf("have %d messages, want %d (seqs %v)", len(msgs), n, seqs)
	}
	for i, m := range msgs {
		if m.Seq != int64(i+1) {
			return fmt.Errorf("message %d has seq %d, want %d (out of order or a gap)", i, m.Seq, i+1)
		}
	}
	return nil
}

// lastContiguous is the highest seq s such that msgs (sorted by seq) hold 1..s.
func lastContiguous(msgs []chat.Message) int64 {
	var s int64
	for _, m := range msgs {
		if m.Seq == s+1 {
			s = m.Seq
		} else if m.Seq > s+1 {
			break
		}
	}
	return s
}
