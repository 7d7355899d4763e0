package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-chat/switchboard/pkg/chat"
)

// socketHub is what the node needs of the hub beyond delivery.
type socketHub interface {
	localHub
	ExpireSessions(now time.Time)
	// RepairAll pushes to every local socket what it missed from the store.
	RepairAll(ctx context.Context)
}

// NodeConfig configures a Node.
type NodeConfig struct {
	Self           chat.Host
	HeartbeatEvery time.Duration // 2 s
	HostTTL        time.Duration // 6 s: a host whose heartbeat is older is dead
	ClaimTimeout   time.Duration // how long start-up waits for a stale holder of our id
}

// Node is this host's membership in the cluster: it claims the host id, keeps the
// heartbeat fresh, re-registers every socket when Redis lost them, refreshes the view
// of live hosts, repairs missed hand-offs and expires sessions.
type Node struct {
	cfg      NodeConfig
	presence chat.PresenceStore
	dir      *Directory
	reg      *Registry
	hub      socketHub
	log      *slog.Logger

	registered atomic.Bool
	lastBeat   atomic.Int64 // unix nanos of the last successful heartbeat
	// left is set by Leave: no heartbeat may register the host again while it drains.
	// beatMu makes that hold for a heartbeat already on its way to Redis: Run checks
	// left and beats under it, and Leave sets left and removes the registration under
	// it, so a heartbeat either lands before the removal or never starts. Without it,
	// one in flight as the host drained re-registered it after Leave (CI saw the drained
	// host still registered, its last heartbeat in the drain's last millisecond).
	beatMu      sync.Mutex
	left        atomic.Bool
	repairMu    sync.Mutex
	repairing   bool   // a RepairAll runs
	repairAgain string // why another was asked for meanwhile ("": none was)
	// alive maps every other host alive at the last refresh to its instance (Run's
	// goroutine only; see noteLost).
	alive map[string]string
}

// NewNode returns a Node; call Claim, then Run.
func NewNode(cfg NodeConfig, presence chat.PresenceStore, dir *Directory, reg *Registry, hub socketHub, log *slog.Logger) *Node {
	if cfg.HeartbeatEvery == 0 {
		cfg.HeartbeatEvery = 2 * time.Second
	}
	if cfg.HostTTL == 0 {
		cfg.HostTTL = 6 * time.Second
	}
	if cfg.ClaimTimeout == 0 {
		cfg.ClaimTimeout = cfg.HostTTL + 2*time.Second
	}
	return &Node{cfg: cfg, presence: presence, dir: dir, reg: reg, hub: hub, log: log}
}

// Claim registers the host id. A previous instance that died still holds it until its
// heartbeat goes stale, so Claim waits up to ClaimTimeout; a holder whose heartbeat
// keeps moving is another live host, and Claim fails.
func (n *Node) Claim(ctx context.Context) error {
	deadline := time.Now().Add(n.cfg.ClaimTimeout)
	for {
		err := n.beat(ctx)
		if err == nil {
			return nil
		}
		if chat.ErrorCode(err) != chat.EHostIDTaken {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("CHAT_HOST_ID %q is held by another live host", n.cfg.Self.HostID)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (n *Node) beat(ctx context.Context) error {
	h := n.cfg.Self
	h.LastHeartbeat = time.Now().UTC()
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	fresh, err := n.presence.Heartbeat(ctx, h, n.cfg.HostTTL)
	if err != nil {
		return err
	}
	n.dir.SetSelf(h)
	n.lastBeat.Store(time.Now().UnixNano())
	first := !n.registered.Swap(true)
	if (fresh && !first) || n.reg.Dirty() {
		n.reregister(ctx)
	}
	if fresh && !first {
		// Our registration was gone (Redis lost its data) or stale: until now senders
		// found none of our sockets and recorded no hand-off for them.
		n.repairAll(ctx, "presence was lost")
	}
	return nil
}

// repairAll runs the hub's RepairAll in the background, one at a time. Asked again
// while one runs, it runs once more afterwards: the running pass may already be past
// the sockets that the new cause (another host's death) concerns.
func (n *Node) repairAll(ctx context.Context, why string) {
	n.repairMu.Lock()
	if n.repairing {
		n.repairAgain = why
		n.repairMu.Unlock()
		return
	}
	n.repairing = true
	n.repairMu.Unlock()
	go func() {
		for {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			start := time.Now()
			n.hub.RepairAll(rctx)
			cancel()
			n.log.Info("repaired every socket", "why", why, "took", time.Since(start))
			n.repairMu.Lock()
			why = n.repairAgain
			n.repairAgain = ""
			if why == "" {
				n.repairing = false
			}
			n.repairMu.Unlock()
			if why == "" {
				return
			}
		}
	}()
}

// reregister writes every live socket of this host again: after Redis lost its data
// or a presence write failed.
func (n *Node) reregister(ctx context.Context) {
	conns := n.hub.Connections()
	if len(conns) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	for i := 0; i < len(conns); i += maxBatch {
		end := min(i+maxBatch, len(conns))
		if err := n.presence.AddConnections(ctx, conns[i:end]); err != nil {
			n.reg.MarkDirty()
			n.log.Warn("re-register presence", "n", len(conns), "err", err)
			return
		}
	}
	n.log.Info("re-registered presence", "connections", len(conns))
}

// Ready reports whether the host is registered and its heartbeat is current.
func (n *Node) Ready() bool {
	return n.registered.Load() && time.Since(time.Unix(0, n.lastBeat.Load())) < n.cfg.HostTTL
}

// Run keeps the node's loops going until ctx ends.
func (n *Node) Run(ctx context.Context) {
	beat := time.NewTicker(n.cfg.HeartbeatEvery)
	tick := time.NewTicker(time.Second)
	prune := time.NewTicker(30 * time.Second)
	defer beat.Stop()
	defer tick.Stop()
	defer prune.Stop()
	n.refresh(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-beat.C:
			n.beatMu.Lock()
			var err error
			if !n.left.Load() {
				err = n.beat(ctx)
			}
			n.beatMu.Unlock()
			if err != nil && !errors.Is(err, context.Canceled) {
				n.log.Warn("heartbeat", "err", err)
			}
		case now := <-tick.C:
			n.hub.ExpireSessions(now)
			n.refresh(ctx)
			n.repair(ctx)
			n.disconnectOwed(ctx)
		case <-prune.C:
			n.prune(ctx)
		}
	}
}

// pruner is implemented by the Redis store: hosts that were killed never remove their
// own registration, so every host now and then removes those dead for a minute.
type pruner interface {
	PruneHosts(ctx context.Context, olderThan time.Duration) ([]string, error)
}

func (n *Node) prune(ctx context.Context) {
	p, ok := n.presence.(pruner)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if gone, err := p.PruneHosts(ctx, max(time.Minute, 10*n.cfg.HostTTL)); err == nil && len(gone) > 0 {
		n.log.Info("pruned dead hosts", "hosts", gone)
	}
}

// refresh reloads the view of hosts.
func (n *Node) refresh(ctx context.Context) {
	hctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	hosts, err := n.presence.Hosts(hctx)
	if err != nil {
		n.dir.ReadFailed()
		return // keep the last known list
	}
	n.dir.Update(hosts)
	n.noteLost(ctx)
}

// noteLost repairs every local socket when a host that was alive at the last refresh
// has died since without leaving: its heartbeat expired, or it is registered again by
// a new instance (a restart after a crash). A host killed between a message's commit
// and its fan-out has answered `sent` (or lost the answer, and the sender may never
// resend) without handing the message to the other hosts or recording the hand-off,
// and no later event would bring it to a socket that stays connected (contract section
// 4.1). A drained host removes its registration after its deliveries are done, and is
// not counted.
func (n *Node) noteLost(ctx context.Context) {
	now := map[string]string{}
	for _, h := range n.dir.Others() {
		now[h.HostID] = h.Instance
	}
	var lost []string
	for id, instance := range n.alive {
		if cur, ok := now[id]; ok && cur == instance {
			continue
		}
		if _, registered := n.dir.Host(id); registered {
			lost = append(lost, id)
		}
	}
	n.alive = now
	if len(lost) > 0 {
		n.log.Warn("hosts died; pushing what they may not have delivered to every local socket", "hosts", lost)
		n.repairAll(ctx, "a host died")
	}
}

// repair takes the hand-offs other hosts could not make to this one and pushes those
// messages from the database.
func (n *Node) repair(ctx context.Context) {
	tctx, cancel := context.WithTimeout(ctx, time.Second)
	todo, err := n.presence.TakeHandoffs(tctx, n.cfg.Self.HostID)
	cancel()
	if err != nil || len(todo) == 0 {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for threadID, seq := range todo {
		n.hub.Repair(rctx, threadID, seq)
	}
	n.log.Info("repaired missed hand-offs", "threads", len(todo))
}

// disconnectOwed closes the sockets of logouts whose disconnect call could not reach
// this host (contract section 3: a logout ends its sockets on every host).
func (n *Node) disconnectOwed(ctx context.Context) {
	tctx, cancel := context.WithTimeout(ctx, time.Second)
	todo, err := n.presence.TakeDisconnects(tctx, n.cfg.Self.HostID)
	cancel()
	if err != nil || len(todo) == 0 {
		return
	}
	closed := 0
	for _, d := range todo {
		if d.SessionHash != "" {
			closed += n.hub.DisconnectSession(d.SessionHash)
		} else {
			closed += n.hub.DisconnectUser(d.UserID)
		}
	}
	n.log.Info("took disconnects other hosts could not send", "records", len(todo), "closed", closed)
}

// Leave removes this host's presence entries and registration (drain, after the
// sockets are closed).
func (n *Node) Leave(ctx context.Context) {
	n.beatMu.Lock()
	defer n.beatMu.Unlock()
	n.left.Store(true)
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if conns := n.hub.Connections(); len(conns) > 0 {
		if err := n.presence.RemoveConnections(ctx, conns); err != nil {
			n.log.Warn("leave: remove presence", "err", err)
		}
	}
	if err := n.presence.RemoveHost(ctx, n.cfg.Self.HostID); err != nil {
		n.log.Warn("leave: remove host", "err", err)
	}
	n.registered.Store(false)
}
