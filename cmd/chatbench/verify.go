package main

import (
	"math/bits"
	"sync"
	"sync/atomic"
)

// Verification model. Every thread of a run is fresh, so its seqs run 1, 2, 3... with
// no gaps, and every message in it is ours. A threadLog records, per seq, which device
// sent it and the fingerprint of its id, as the sender's `sent` answer reports it (the
// contract's "stored durably"). Each receiving device keeps, per thread, a bitset of
// the seqs it holds. After the run:
//   - lost:      a seq acked to another device that this device never received
//   - reordered: a new seq arriving on a connection after a higher one on that same
//                connection (the contract orders live and catch-up frames per socket;
//                `sync` answers fill gaps and are exempt)
//   - duplicate: a seq this device already held (legal on the wire: at-least-once;
//                counted, not a failure). Deduping by seq is deduping by message.id
//                because seq -> id is one-to-one, which the fingerprint check proves:
//   - conflict:  the XOR of the fingerprints of the ids a device received differs
//                from the XOR of the acked ids at those seqs.

// threadLog is what the senders of one thread were told.
type threadLog struct {
	ID   string
	Name string
	// Participants is how many devices are online members during the load: each
	// acked message is expected on Participants-1 of them (all but the sender's).
	Participants int

	mu   sync.Mutex
	from []int32  // from[seq] = sender device index + 1; 0: not acked (yet)
	fp   []uint64 // fingerprint of the acked message id at seq
	last int64    // highest acked seq

	// lastSeen tracks, per seq, deliveries and the latest latency, for "latency to the
	// last member" (fanout). nil when not tracked.
	lastSeen []lastSlot
}

type lastSlot struct {
	n   atomic.Int32
	max atomic.Int64
}

// trackLast makes the log keep per-message arrival counts for up to n seqs.
func (t *threadLog) trackLast(n int) { t.lastSeen = make([]lastSlot, n+1) }

// acked records that device dev was answered `sent` for seq with message id fp.
// It returns false when the seq was already acked to someone else with another id
// (a server bug: two messages with one seq).
func (t *threadLog) acked(seq int64, dev int, fp uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for int64(len(t.from)) <= seq {
		t.from = append(t.from, 0)
		t.fp = append(t.fp, 0)
	}
	if t.from[seq] != 0 {
		return t.from[seq] == int32(dev+1) && t.fp[seq] == fp
	}
	t.from[seq], t.fp[seq] = int32(dev+1), fp
	t.last = max(t.last, seq)
	return true
}

// ackedCount counts acked seqs.
func (t *threadLog) ackedCount() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var n int64
	for _, f := range t.from {
		if f != 0 {
			n++
		}
	}
	return n
}

// arrived notes one delivery of seq with latency lat; when it is the want-th, it
// returns the slowest latency of all of them (the latency to the last member).
func (t *threadLog) arrived(seq int64, lat int64, want int) (int64, bool) {
	if t.lastSeen == nil || seq <= 0 || seq >= int64(len(t.lastSeen)) || want <= 0 {
		return 0, false
	}
	s := &t.lastSeen[seq]
	for {
		m := s.max.Load()
		if lat <= m || s.max.CompareAndSwap(m, lat) {
			break
		}
	}
	if int(s.n.Add(1)) == want {
		return s.max.Load(), true
	}
	return 0, false
}

// recvState is one device's view of one thread. Only the device's reader touches it
// during the run (under the device's lock); the verifier reads it afterwards.
type recvState struct {
	t      *threadLog
	bits   []uint64
	contig int64 // every seq <= contig is held (received, or sent by this device)
	// connMax is the highest seq a `message` frame brought on the current connection.
	connMax  int64
	xor      uint64 // XOR of the fingerprints of received (not own) message ids
	received int64  // distinct seqs received from others
	// ackSent is the highest seq acked to the server; ackAt when (ns on the run clock).
	ackSent int64
	ackAt   int64
}

func (r *recvState) has(seq int64) bool {
	w := seq >> 6
	return seq > 0 && w < int64(len(r.bits)) && r.bits[w]&(1<<(uint(seq)&63)) != 0
}

func (r *recvState) set(seq int64) {
	w := int(seq >> 6)
	for len(r.bits) <= w {
		r.bits = append(r.bits, 0)
	}
	r.bits[w] |= 1 << (uint(seq) & 63)
	for r.has(r.contig + 1) {
		r.contig++
	}
}

// Outcome of offering one message to a recvState.
type recvOutcome int

const (
	recvNew recvOutcome = iota
	recvDuplicate
	recvReordered // new, but after a higher seq on the same connection
)

// receive records a message (seq, id fingerprint) from a `message` frame (live or
// catch-up, ordered=true) or a `sync_result` (ordered=false).
func (r *recvState) receive(seq int64, fp uint64, ordered bool) recvOutcome {
	if seq <= 0 {
		return recvDuplicate
	}
	if r.has(seq) {
		if ordered && seq > r.connMax {
			r.connMax = seq
		}
		return recvDuplicate
	}
	out := recvNew
	if ordered {
		if seq < r.connMax {
			out = recvReordered
		} else {
			r.connMax = seq
		}
	}
	r.set(seq)
	r.xor ^= fp
	r.received++
	return out
}

// own records a seq this device sent itself (it gets `sent`, not `message`).
func (r *recvState) own(seq int64) {
	if seq > 0 && !r.has(seq) {
		r.set(seq)
	}
}

// Check is the verdict on one device's thread after the run.
type Check struct {
	Expected  int64 // acked messages from other devices
	Received  int64 // of those, held
	Lost      int64
	Extra     int64 // held but never acked to their sender (e.g. the sender's answer was lost)
	Conflict  bool  // fingerprints disagree
	Unchecked bool  // the fingerprint check was not possible (Extra > 0)
}

// check compares a device's state (device index dev) with the thread's log. The caller
// holds whatever lock guards r.
func (r *recvState) check(dev int) Check {
	t := r.t
	t.mu.Lock()
	defer t.mu.Unlock()
	var c Check
	var want uint64
	me := int32(dev + 1)
	for seq := int64(1); seq < int64(len(t.from)); seq++ {
		f := t.from[seq]
		if f == 0 || f == me {
			continue
		}
		c.Expected++
		if r.has(seq) {
			c.Received++
			want ^= t.fp[seq]
		} else {
			c.Lost++
		}
	}
	// Held seqs nobody was acked for (beyond the log, or with from == 0).
	for w, word := range r.bits {
		for word != 0 {
			b := word & -word
			word &^= b
			seq := int64(w)*64 + int64(bits.TrailingZeros64(b))
			if seq >= int64(len(t.from)) || t.from[seq] == 0 {
				c.Extra++
			}
		}
	}
	if c.Extra > 0 {
		c.Unchecked = true
	} else {
		c.Conflict = want != r.xor
	}
	return c
}
