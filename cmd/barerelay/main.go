// Command barerelay is the reference that issue 6 measures Switchboard against, built
// here so that both run on the same machine, driven by the same chatbench: two or more
// gorilla/websocket processes that hand each message to the recipient's process over
// one internal HTTP POST, with one Redis lookup and one PostgreSQL insert per message.
//
// It is not a chat server and must never be deployed: it has no passwords (a token is
// the user name), no idempotency, no rate limits, no catch-up, no retries and no
// ordering across concurrent senders of a thread, and its presence is one hash field
// per user. It speaks just enough of api/PROTOCOL.md (register, login, create thread,
// /ws with send, sent and message frames) for `chatbench oneone`, `ramp` and `fanout`.
// `scripts/bench.sh --relay` runs it; docs/bench/README.md compares the two.
//
//	barerelay -public 127.0.0.1:8081 -internal 127.0.0.1:9081 \
//	    -redis redis://127.0.0.1:6379/0 -database postgres://...
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	goredis "github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/pkg/chat" // the contract's message shape (stdlib only)
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "barerelay:", err)
		os.Exit(1)
	}
}

// relay is one process of the relay.
type relay struct {
	self   string // this process's internal base URL, the value of its presence fields
	prefix string // Redis key prefix
	rdb    *goredis.Client
	db     *sql.DB
	client *http.Client

	mu      sync.Mutex
	sockets map[string]*socket // user -> its socket here (one device per user)
	members map[string][]string
	seqs    map[string]int64 // thread -> last seq handed out by this process
}

// socket is one client connection; writes are serialised by mu.
type socket struct {
	user string
	mu   sync.Mutex
	c    *websocket.Conn
}

func (s *socket) write(p []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return s.c.WriteMessage(websocket.TextMessage, p)
}

// config is what the command line sets.
type config struct {
	public, internal string // listen addresses
	redisURL, prefix string
	databaseURL      string
	dbConns          int // PostgreSQL pool size
}

func run() error {
	var c config
	flag.StringVar(&c.public, "public", "127.0.0.1:8081", "address of the client listener (HTTP API and /ws)")
	flag.StringVar(&c.internal, "internal", "127.0.0.1:9081", "address of the host-to-host listener")
	flag.StringVar(&c.redisURL, "redis", "redis://127.0.0.1:6379/0", "Redis URL")
	flag.StringVar(&c.prefix, "prefix", "barerelay:", "Redis key prefix")
	flag.StringVar(&c.databaseURL, "database", "", "PostgreSQL URL (required)")
	// Beside a chatd cluster on one PostgreSQL (bench.sh --vs relay), three relays
	// at 32 connections each and three hosts at 20 pass the server's default limit of
	// 100 in a burst; the script gives each side a pool that fits.
	flag.IntVar(&c.dbConns, "db-max-conns", 32, "PostgreSQL connections this process may open")
	flag.Parse()
	if c.databaseURL == "" {
		return errors.New("-database is required")
	}
	if c.dbConns < 1 {
		return errors.New("-db-max-conns must be at least 1")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var lc net.ListenConfig
	pub, err := lc.Listen(ctx, "tcp", c.public)
	if err != nil {
		return err
	}
	in, err := lc.Listen(ctx, "tcp", c.internal)
	if err != nil {
		return err
	}
	return serve(ctx, c, pub, in)
}

// serve runs one relay process on the two listeners until ctx ends.
func serve(ctx context.Context, c config, pub, in net.Listener) error {
	ropt, err := goredis.ParseURL(c.redisURL)
	if err != nil {
		return fmt.Errorf("-redis: %w", err)
	}
	db, err := sql.Open("pgx", c.databaseURL)
	if err != nil {
		return fmt.Errorf("-database: %w", err)
	}
	defer db.Close()
	db.SetMaxOpenConns(c.dbConns)
	db.SetMaxIdleConns(c.dbConns)
	if err := createTable(ctx, db); err != nil {
		return fmt.Errorf("create table: %w", err)
	}
	r := &relay{
		self: "http://" + in.Addr().String(), prefix: c.prefix, rdb: goredis.NewClient(ropt), db: db,
		client:  &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 10 * time.Second},
		sockets: map[string]*socket{}, members: map[string][]string{}, seqs: map[string]int64{},
	}
	defer r.rdb.Close()
	pubMux := http.NewServeMux()
	pubMux.HandleFunc("POST /api/v1/auth/register", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusCreated) })
	pubMux.HandleFunc("POST /api/v1/auth/login", r.login)
	pubMux.HandleFunc("POST /api/v1/threads", r.createThread)
	pubMux.HandleFunc("GET /ws", r.serveWS)
	pubMux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	pubMux.Handle("GET /metrics", promhttp.Handler())
	inMux := http.NewServeMux()
	inMux.HandleFunc("POST /deliver", r.deliver)
	servers := []*http.Server{{Handler: pubMux}, {Handler: inMux}}
	listeners := []net.Listener{pub, in}
	errc := make(chan error, len(servers))
	for i, s := range servers {
		go func() { errc <- s.Serve(listeners[i]) }()
	}
	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	for _, s := range servers {
		_ = s.Close() // leaves hijacked connections open: the sockets are closed below
	}
	r.mu.Lock()
	users := make([]string, 0, len(r.sockets))
	for u, s := range r.sockets {
		users = append(users, u)
		_ = s.c.Close()
	}
	r.mu.Unlock()
	if len(users) > 0 {
		_ = r.rdb.HDel(context.Background(), r.prefix+"presence", users...).Err()
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// createTable makes the message table; the processes start together, and two
// concurrent CREATE TABLE IF NOT EXISTS can still collide, hence the lock.
func createTable(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(6)`); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS relay_messages (
		id bigserial PRIMARY KEY, thread_id text NOT NULL, seq bigint NOT NULL,
		sender text NOT NULL, body text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return err
	}
	return tx.Commit()
}

func bearer(req *http.Request) string {
	return strings.TrimPrefix(req.Header.Get("Authorization"), "Bearer ")
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// login answers the user name as both the token and the id: the relay checks nothing.
func (r *relay) login(w http.ResponseWriter, req *http.Request) {
	var in struct {
		Username string `json:"username"`
	}
	if err := json.NewDecoder(req.Body).Decode(&in); err != nil || in.Username == "" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]string{"code": "invalid_request", "message": "username"}})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"token": in.Username, "user": map[string]string{"id": in.Username, "username": in.Username}})
}

// createThread keeps the member list in Redis, where every process can read it.
func (r *relay) createThread(w http.ResponseWriter, req *http.Request) {
	var in struct {
		Members []string `json:"members"`
	}
	if err := json.NewDecoder(req.Body).Decode(&in); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]string{"code": "invalid_request", "message": err.Error()}})
		return
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	members := append([]string{bearer(req)}, in.Members...)
	if err := r.rdb.RPush(req.Context(), r.prefix+"thread:"+id, members).Err(); err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]any{"error": map[string]string{"code": "internal", "message": err.Error()}})
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"thread": map[string]string{"id": id}})
}

var upgrader = websocket.Upgrader{ReadBufferSize: 1024, WriteBufferSize: 1024}

// serveWS registers the user's presence, says `synced` (there is no backlog to send)
// and handles the socket's sends one at a time, in its reader.
func (r *relay) serveWS(w http.ResponseWriter, req *http.Request) {
	user := bearer(req)
	c, err := upgrader.Upgrade(w, req, nil)
	if err != nil {
		return
	}
	s := &socket{user: user, c: c}
	r.mu.Lock()
	r.sockets[user] = s
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		if r.sockets[user] == s {
			delete(r.sockets, user)
		}
		r.mu.Unlock()
		_ = c.Close()
	}()
	if err := r.rdb.HSet(req.Context(), r.prefix+"presence", user, r.self).Err(); err != nil {
		return
	}
	if s.write([]byte(`{"type":"synced"}`)) != nil {
		return
	}
	for {
		_, p, err := c.ReadMessage()
		if err != nil {
			return
		}
		var in struct {
			Type        string `json:"type"`
			ThreadID    string `json:"thread_id"`
			ClientMsgID string `json:"client_msg_id"`
			Body        string `json:"body"`
		}
		if json.Unmarshal(p, &in) != nil || in.Type != "send" {
			continue // acks and the rest: nothing to do
		}
		if err := r.send(req.Context(), s, in.ThreadID, in.ClientMsgID, in.Body); err != nil {
			slog.Warn("send failed", "err", err)
			ref, _ := json.Marshal(in.ClientMsgID)
			_ = s.write([]byte(`{"type":"error","code":"internal","ref":` + string(ref) + `}`))
		}
	}
}

// send is the whole path of a message: one Redis lookup of the members' hosts, one
// insert, `sent`, then one POST per host that has recipients, waiting for each.
func (r *relay) send(ctx context.Context, s *socket, thread, cmid, body string) error {
	members, err := r.threadMembers(ctx, thread)
	if err != nil {
		return err
	}
	others := make([]string, 0, len(members))
	for _, m := range members {
		if m != s.user {
			others = append(others, m)
		}
	}
	hosts, err := r.rdb.HMGet(ctx, r.prefix+"presence", others...).Result()
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.seqs[thread]++
	seq := r.seqs[thread]
	r.mu.Unlock()
	m := chat.Message{ID: fmt.Sprintf("%s.%d", thread, seq), ThreadID: thread, Seq: seq, SenderID: s.user, ClientMsgID: cmid, Body: body, CreatedAt: time.Now().UTC()}
	if _, err := r.db.ExecContext(ctx, `INSERT INTO relay_messages (thread_id, seq, sender, body) VALUES ($1, $2, $3, $4)`,
		thread, seq, s.user, body); err != nil {
		return err
	}
	sent, _ := json.Marshal(struct {
		Type        string       `json:"type"`
		ClientMsgID string       `json:"client_msg_id"`
		Message     chat.Message `json:"message"`
	}{"sent", cmid, m})
	_ = s.write(sent)
	frame, _ := json.Marshal(struct {
		Type    string       `json:"type"`
		Message chat.Message `json:"message"`
	}{"message", m})
	byHost := map[string][]string{}
	for i, h := range hosts {
		if h, ok := h.(string); ok {
			byHost[h] = append(byHost[h], others[i])
		}
	}
	for h, to := range byHost {
		if h == r.self {
			r.push(to, frame)
			continue
		}
		b, _ := json.Marshal(struct {
			To    []string        `json:"to"`
			Frame json.RawMessage `json:"frame"`
		}{to, frame})
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, h+"/deliver", bytes.NewReader(b))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := r.client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	return nil
}

// threadMembers reads a thread's members from Redis once per process.
func (r *relay) threadMembers(ctx context.Context, thread string) ([]string, error) {
	r.mu.Lock()
	m, ok := r.members[thread]
	r.mu.Unlock()
	if ok {
		return m, nil
	}
	m, err := r.rdb.LRange(ctx, r.prefix+"thread:"+thread, 0, -1).Result()
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.members[thread] = m
	r.mu.Unlock()
	return m, nil
}

// push writes frame to the sockets here of the users named.
func (r *relay) push(to []string, frame []byte) {
	for _, u := range to {
		r.mu.Lock()
		s := r.sockets[u]
		r.mu.Unlock()
		if s != nil {
			_ = s.write(frame)
		}
	}
}

// deliver is the internal call: write the frame to the local sockets named, then ack.
func (r *relay) deliver(w http.ResponseWriter, req *http.Request) {
	var in struct {
		To    []string        `json:"to"`
		Frame json.RawMessage `json:"frame"`
	}
	if err := json.NewDecoder(req.Body).Decode(&in); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.push(in.To, in.Frame)
	w.WriteHeader(http.StatusNoContent)
}
