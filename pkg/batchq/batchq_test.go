package batchq_test

import (
	"slices"
	"testing"

	"github.com/switchboard-chat/switchboard/pkg/batchq"
)

type req struct {
	name   string
	weight int
}

func names(rs []*req) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.name)
	}
	return out
}

// The first caller leads; later ones wait, are taken oldest first up to the weight
// limit (an overweight one alone), and the lead passes to the oldest still waiting.
func TestLeadTakePass(t *testing.T) {
	var q batchq.Queue[*req]
	a, b, c, d := &req{"a", 1}, &req{"b", 2}, &req{"c", 5}, &req{"d", 1}
	if !q.Join(a) {
		t.Fatal("the first caller of an idle queue must lead")
	}
	for _, r := range []*req{b, c, d} {
		if q.Join(r) {
			t.Fatalf("%s leads while a leads", r.name)
		}
	}
	weight := func(r *req) int { return r.weight }
	if got := names(q.Take(4, weight)); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("first batch %v, want [a b] (c would pass the limit of 4)", got)
	}
	next, ok := q.Pass()
	if !ok || next != c {
		t.Fatalf("lead passed to %v (%v), want c, the oldest waiting", next, ok)
	}
	if got := names(q.Take(4, weight)); !slices.Equal(got, []string{"c"}) {
		t.Fatalf("second batch %v, want [c] alone: over the limit, but never left behind", got)
	}
	if next, ok := q.Pass(); !ok || next != d {
		t.Fatalf("lead passed to %v, want d", next)
	}
	if got := names(q.Take(4, nil)); !slices.Equal(got, []string{"d"}) {
		t.Fatalf("third batch %v, want [d]", got)
	}
	if _, ok := q.Pass(); ok {
		t.Fatal("lead passed with nobody waiting")
	}
	if !q.Join(&req{"e", 1}) {
		t.Fatal("the queue did not become idle after the last batch")
	}
}

// A waiting caller may leave; the leader, and a caller handed the lead, may not.
func TestLeave(t *testing.T) {
	var q batchq.Queue[*req]
	a, b, c := &req{"a", 1}, &req{"b", 1}, &req{"c", 1}
	q.Join(a)
	q.Join(b)
	q.Join(c)
	if q.Leave(a) {
		t.Fatal("the leader left its own queue")
	}
	if !q.Leave(b) {
		t.Fatal("a waiting caller could not leave")
	}
	if got := names(q.Take(1, nil)); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("batch %v, want [a]", got)
	}
	if next, ok := q.Pass(); !ok || next != c {
		t.Fatalf("lead passed to %v, want c (b left)", next)
	}
	if q.Leave(c) {
		t.Fatal("a caller handed the lead left: nobody would lead")
	}
	if q.Leave(b) {
		t.Fatal("a request that already left left again")
	}
}
