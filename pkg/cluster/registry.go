package cluster

import (
	"context"
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
	return &Registry{store: store, dir: dir, log: log, ops: make(chan regOp, 4096)}
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

// CountLive counts the user's entries on live hosts.
func (r *Registry) CountLive(ctx context.Context, userID string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	m, err := r.store.Lookup(ctx, []string{userID})
	if err != nil {
		return 0, err
	}
	n := 0
	reloaded := false
	for _, c := range m[userID] {
		if !r.dir.AliveInstance(c.HostID, c.Instance) && !reloaded {
			// The view is up to a second old: the sockets of a host that joined or
			// restarted since would not count, and the user could pass the limit.
			reloaded = true
			if hosts, err := r.store.Hosts(ctx); err == nil {
				r.dir.Update(hosts)
			}
		}
		if r.dir.AliveInstance(c.HostID, c.Instance) {
			n++
		}
	}
	return n, nil
}
