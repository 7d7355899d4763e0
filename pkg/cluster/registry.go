package cluster

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/switchboard-chat/switchboard/pkg/chat"
)

// Registry writes this host's sockets into the presence table. One goroutine takes
// whatever registrations and removals are queued and writes them in one pipeline, so a
// connect storm costs a few round trips, not one per socket, and a quiet host adds no
// delay. A write that fails marks the registry dirty: the next heartbeat re-registers
// every live socket.
type Registry struct {
	store chat.PresenceStore
	slots SocketSlots // nil when store does not claim socket slots
	dir   *Directory
	log   *slog.Logger
	ops   chan regOp
	dirty atomic.Bool
}

type regOp struct {
	conn chat.Connection
	add  bool
	done chan error
}

// maxBatch bounds one pipeline.
const maxBatch = 512

// NewRegistry returns a registry; Run must be running for Register to return.
func NewRegistry(store chat.PresenceStore, dir *Directory, log *slog.Logger) *Registry {
	slots, _ := store.(SocketSlots)
	return &Registry{store: store, slots: slots, dir: dir, log: log, ops: make(chan regOp, 4096)}
}

// SocketSlots claims a user's socket slots cluster-wide; *redis.Store implements it
// (see its ReserveSocket and ReleaseSocket).
type SocketSlots interface {
	ReserveSocket(ctx context.Context, userID, connID string, limit int, live []chat.Host, final bool) (chat.SocketClaim, int, error)
	ReleaseSocket(ctx context.Context, userID, connID string) error
}

// errNoSlots: the presence store cannot claim socket slots.
var errNoSlots = errors.New("cluster: the presence store does not claim socket slots")

// ReserveSocket claims one of the user's limit socket slots, cluster-wide, for the
// socket connID about to be upgraded, in one Redis round trip (two when the user has
// entries of hosts this view does not know: the view is reloaded first). False when
// the user's live sockets and claims already reach limit. The claim is dropped when
// Register writes connID's entry, or by ReleaseSocket; it expires by itself
// otherwise. An error means nothing could be counted (Redis unreachable).
func (r *Registry) ReserveSocket(ctx context.Context, userID, connID string, limit int) (bool, error) {
	if r.slots == nil {
		return false, errNoSlots
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	claim, _, err := r.slots.ReserveSocket(ctx, userID, connID, limit, r.dir.Live(), false)
	if err == nil && claim == chat.SocketClaimUnsure {
		// The view is up to a second old: entries of a host that joined or restarted
		// since would not count, and the user could pass the limit.
		if hosts, herr := r.store.Hosts(ctx); herr == nil {
			r.dir.Update(hosts)
		}
		claim, _, err = r.slots.ReserveSocket(ctx, userID, connID, limit, r.dir.Live(), true)
	}
	if err != nil {
		return false, err
	}
	return claim == chat.SocketClaimReserved, nil
}

// ReleaseSocket drops connID's claim: its upgrade failed.
func (r *Registry) ReleaseSocket(userID, connID string) {
	if r.slots == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := r.slots.ReleaseSocket(ctx, userID, connID); err != nil {
		// It expires by itself (redis.SocketClaimTTL).
		r.log.Warn("release socket slot", "conn_id", connID, "err", err)
	}
}

// Register writes c's entry and waits until it is written (or failed).
func (r *Registry) Register(ctx context.Context, c chat.Connection) error {
	done := make(chan error, 1)
	select {
	case r.ops <- regOp{conn: c, add: true, done: done}:
	case <-ctx.Done():
		r.dirty.Store(true)
		return ctx.Err()
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Unregister queues the removal of c's entry.
func (r *Registry) Unregister(c chat.Connection) {
	select {
	case r.ops <- regOp{conn: c}:
	default:
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := r.store.RemoveConnections(ctx, []chat.Connection{c}); err != nil {
			r.log.Warn("remove presence", "conn_id", c.ConnID, "err", err)
		}
	}
}

// Dirty reports and clears whether a write failed since the last call.
func (r *Registry) Dirty() bool { return r.dirty.Swap(false) }

// MarkDirty asks for a full re-registration at the next heartbeat.
func (r *Registry) MarkDirty() { r.dirty.Store(true) }

// Run writes queued operations until ctx ends, then writes what is left.
func (r *Registry) Run(ctx context.Context) {
	for {
		var first regOp
		select {
		case first = <-r.ops:
		case <-ctx.Done():
			r.drainQueue()
			return
		}
		r.flush(ctx, first)
	}
}

func (r *Registry) drainQueue() {
	for {
		select {
		case op := <-r.ops:
			r.flush(context.Background(), op)
		default:
			return
		}
	}
}

func (r *Registry) flush(ctx context.Context, first regOp) {
	batch := []regOp{first}
	for len(batch) < maxBatch {
		select {
		case op := <-r.ops:
			batch = append(batch, op)
			continue
		default:
		}
		break
	}
	var adds, removes []chat.Connection
	for _, op := range batch {
		if op.add {
			adds = append(adds, op.conn)
		} else {
			removes = append(removes, op.conn)
		}
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	var addErr error
	if len(adds) > 0 {
		if addErr = r.store.AddConnections(ctx, adds); addErr != nil {
			r.dirty.Store(true)
			r.log.Warn("register presence", "n", len(adds), "err", addErr)
		}
	}
	if len(removes) > 0 {
		if err := r.store.RemoveConnections(ctx, removes); err != nil {
			r.log.Warn("remove presence", "n", len(removes), "err", err)
		}
	}
	for _, op := range batch {
		if op.done != nil {
			op.done <- addErr
		}
	}
}
