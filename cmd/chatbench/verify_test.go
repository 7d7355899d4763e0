package main

import (
	"fmt"
	"testing"
)

func msgID(seq int64) []byte { return []byte(fmt.Sprintf("0190aaaa-0000-7000-8000-%012d", seq)) }

func TestVerifier(t *testing.T) {
	t.Parallel()
	const sender, receiver = 0, 1
	type step struct {
		seq     int64
		id      []byte // nil: the right id
		ordered bool
	}
	cases := []struct {
		name     string
		acked    int64 // seqs 1..acked acked to sender
		steps    []step
		want     []recvOutcome
		lost     int64
		conflict bool
		extra    int64
	}{
		{name: "in order, all there", acked: 3,
			steps: []step{{1, nil, true}, {2, nil, true}, {3, nil, true}},
			want:  []recvOutcome{recvNew, recvNew, recvNew}},
		{name: "one lost", acked: 4,
			steps: []step{{1, nil, true}, {2, nil, true}, {4, nil, true}},
			want:  []recvOutcome{recvNew, recvNew, recvNew}, lost: 1},
		{name: "wire duplicate is not a loss", acked: 2,
			steps: []step{{1, nil, true}, {1, nil, true}, {2, nil, true}, {2, nil, true}},
			want:  []recvOutcome{recvNew, recvDuplicate, recvNew, recvDuplicate}},
		{name: "reordered on one connection", acked: 3,
			steps: []step{{1, nil, true}, {3, nil, true}, {2, nil, true}},
			want:  []recvOutcome{recvNew, recvNew, recvReordered}},
		{name: "sync answers fill gaps without counting as reorder", acked: 3,
			steps: []step{{1, nil, true}, {3, nil, true}, {2, nil, false}},
			want:  []recvOutcome{recvNew, recvNew, recvNew}},
		{name: "a duplicate of an older seq is not a reorder", acked: 3,
			steps: []step{{1, nil, true}, {2, nil, true}, {3, nil, true}, {1, nil, true}},
			want:  []recvOutcome{recvNew, recvNew, recvNew, recvDuplicate}},
		{name: "two ids at one seq is a conflict", acked: 2,
			steps: []step{{1, nil, true}, {2, []byte("someone-else"), true}},
			want:  []recvOutcome{recvNew, recvNew}, conflict: true},
		{name: "received but never acked", acked: 1,
			steps: []step{{1, nil, true}, {2, nil, true}},
			want:  []recvOutcome{recvNew, recvNew}, extra: 1},
		{name: "nothing received", acked: 5, lost: 5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			log := &threadLog{ID: "t", Participants: 2}
			for s := int64(1); s <= tc.acked; s++ {
				if !log.acked(s, sender, fingerprint(msgID(s))) {
					t.Fatalf("acked %d refused", s)
				}
			}
			rs := &recvState{t: log}
			for i, st := range tc.steps {
				id := st.id
				if id == nil {
					id = msgID(st.seq)
				}
				if got := rs.receive(st.seq, fingerprint(id), st.ordered); got != tc.want[i] {
					t.Fatalf("step %d (seq %d): outcome %d, want %d", i, st.seq, got, tc.want[i])
				}
			}
			c := rs.check(receiver)
			if c.Lost != tc.lost {
				t.Errorf("lost %d, want %d", c.Lost, tc.lost)
			}
			if c.Conflict != tc.conflict {
				t.Errorf("conflict %v, want %v", c.Conflict, tc.conflict)
			}
			if c.Extra != tc.extra {
				t.Errorf("extra %d, want %d", c.Extra, tc.extra)
			}
			if c.Expected != tc.acked {
				t.Errorf("expected %d, want %d", c.Expected, tc.acked)
			}
		})
	}
}

func TestVerifierOwnMessages(t *testing.T) {
	t.Parallel()
	// Devices 0 and 1 both send in one thread; each holds the other's messages and
	// its own (from `sent`), and acks the contiguous prefix of both.
	log := &threadLog{ID: "t", Participants: 2}
	a, b := &recvState{t: log}, &recvState{t: log}
	for s := int64(1); s <= 6; s++ {
		from := int(s % 2) // odd from device 1, even from device 0
		log.acked(s, from, fingerprint(msgID(s)))
		if from == 0 {
			a.own(s)
			b.receive(s, fingerprint(msgID(s)), true)
		} else {
			b.own(s)
			if s != 5 { // device 0 misses seq 5
				a.receive(s, fingerprint(msgID(s)), true)
			}
		}
	}
	if ca := a.check(0); ca.Lost != 1 || ca.Expected != 3 || ca.Conflict {
		t.Fatalf("device 0: %+v, want 1 lost of 3", ca)
	}
	if cb := b.check(1); cb.Lost != 0 || cb.Expected != 3 || cb.Conflict {
		t.Fatalf("device 1: %+v", cb)
	}
	if a.contig != 4 || b.contig != 6 {
		t.Fatalf("contiguous: %d and %d, want 4 and 6", a.contig, b.contig)
	}
}

func TestThreadLogConflictingAcks(t *testing.T) {
	t.Parallel()
	log := &threadLog{ID: "t"}
	if !log.acked(1, 3, 42) {
		t.Fatal("first ack refused")
	}
	if !log.acked(1, 3, 42) {
		t.Fatal("the same ack twice (a repeat) is fine")
	}
	if log.acked(1, 4, 43) {
		t.Fatal("seq 1 acked to two devices with two ids must be refused")
	}
}

func TestLastMember(t *testing.T) {
	t.Parallel()
	log := &threadLog{ID: "t"}
	log.trackLast(10)
	for i, lat := range []int64{5, 9, 2} {
		v, done := log.arrived(3, lat, 3)
		if done != (i == 2) {
			t.Fatalf("arrival %d: done %v", i, done)
		}
		if done && v != 9 {
			t.Fatalf("latency to the last member %d, want 9 (the slowest)", v)
		}
	}
	if _, ok := log.arrived(11, 1, 1); ok {
		t.Fatal("seqs beyond the tracked range are ignored")
	}
}
