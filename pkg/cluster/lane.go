package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/switchboard-chat/switchboard/pkg/batchq"
)

// Deliveries to one host share calls. A message's hand-off to another host is one
// POST; on one machine that hop (the client's request, the other process waking, its
// server reading, answering, and this one waking again) cost more host CPU than all the
// rest of the send path: at 1,500 msg/s one-to-one, a message delivered on the
// sender's own host took 289 µs of host CPU, one delivered across hosts 590-640 µs
// (the three hosts together, on one 2-vCPU machine). So the messages bound
// for a host while a call to it is in flight go out together in the next call, one
// body carrying each message with its recipients: the group commit of the hop. As in
// pkg/batchq, the sender that finds the host's lane idle calls at once, so a lone
// message waits for nothing, batches grow only with the load, and no goroutine is
// started per message or per lane.
//
// Only hosts that registered with deliver_batch get a batch body; every other host
// (an older version, another implementation of the contract) gets one call per
// message, as before.

// Bounds of one batch call. Each item weighs at least laneMaxBytes/laneMaxItems, so
// a batch holds at most laneMaxItems; a message to a 100-member thread with 33
// recipients on the host is about 4 KB of body.
const (
	laneMaxItems = 64
	laneMaxBytes = 256 << 10
)

// lane is the queue of deliveries to one host.
type lane struct {
	q batchq.Queue[*laneItem]
}

// laneItem is one message's deliver body ({"message":...,"recipients":[...]}) waiting
// in a lane, and how its caller learns the outcome.
type laneItem struct {
	body []byte
	lead chan struct{}   // buffered 1: the caller is handed the lead
	done chan callResult // buffered 1: the item's own answer ({"results":[...]})
}

// lane returns the lane of a host, making it on first use (hosts are few and come
// back under the same id, so lanes are never removed).
func (d *Deliverer) lane(hostID string) *lane {
	d.lanesMu.Lock()
	defer d.lanesMu.Unlock()
	l := d.lanes[hostID]
	if l == nil {
		if d.lanes == nil {
			d.lanes = map[string]*lane{}
		}
		l = &lane{}
		d.lanes[hostID] = l
	}
	return l
}

// callHost makes one deliver call for c (a message's body to one host) and returns
// its answer: through the host's lane when the host takes batches, else on its own.
func (d *Deliverer) callHost(c *call) callResult {
	if !c.host.DeliverBatch || c.path != PathDeliver {
		return d.do(c)
	}
	l := d.lane(c.host.HostID)
	it := &laneItem{body: c.body, lead: make(chan struct{}, 1), done: make(chan callResult, 1)}
	if !l.q.Join(it) {
		select {
		case r := <-it.done:
			return r
		case <-it.lead:
		case <-c.ctx.Done():
			if l.q.Leave(it) {
				return callResult{err: c.ctx.Err()}
			}
			// Taken into a batch or handed the lead meanwhile: see it through.
			select {
			case r := <-it.done:
				return r
			case <-it.lead:
			}
		}
	}
	// Leading: this item is the oldest in the lane, so the first batch holds it.
	batch := l.q.Take(laneMaxBytes, func(it *laneItem) int { return max(len(it.body), laneMaxBytes/laneMaxItems) })
	d.runBatch(c, batch)
	if next, ok := l.q.Pass(); ok {
		next.lead <- struct{}{}
	}
	return <-it.done
}

// runBatch makes the call for a batch and answers each item. One item goes in the
// single-message form of the contract; more go as {"batch":[...]}, answered by
// {"batch":[{"results":[...]},...]} in the same order.
func (d *Deliverer) runBatch(c *call, batch []*laneItem) {
	d.metrics.DeliverBatch.Observe(float64(len(batch)))
	if len(batch) == 1 {
		batch[0].done <- d.do(c)
		return
	}
	size := len(`{"batch":[]}`)
	for _, it := range batch {
		size += len(it.body) + 1
	}
	body := make([]byte, 0, size)
	body = append(body, `{"batch":[`...)
	for i, it := range batch {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, it.body...)
	}
	body = append(body, "]}"...)
	r := d.do(&call{ctx: c.ctx, host: c.host, path: c.path, body: body})
	var answers [][]byte
	if r.err == nil && r.status == http.StatusOK {
		var err error
		if answers, err = splitBatch(r.body); err == nil && len(answers) != len(batch) {
			err = fmt.Errorf("batch of %d answered with %d results", len(batch), len(answers))
		}
		if err != nil {
			r = callResult{status: r.status, err: err}
		}
	}
	for i, it := range batch {
		if r.err != nil || r.status != http.StatusOK {
			it.done <- callResult{status: r.status, err: r.err}
			continue
		}
		it.done <- callResult{status: http.StatusOK, body: answers[i]}
	}
}

// splitBatch returns the elements of {"batch":[E,...]}: the raw objects, by scanning
// when written as this package writes it, else through encoding/json.
func splitBatch(data []byte) ([][]byte, error) {
	if items, ok := scanBatch(data); ok {
		return items, nil
	}
	var b struct {
		Batch []json.RawMessage `json:"batch"`
	}
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, err
	}
	if b.Batch == nil {
		return nil, errors.New(`want {"batch":[...]}`)
	}
	return rawItems(b.Batch), nil
}

// rawItems views encoding/json's elements as byte slices, without copying.
func rawItems(raw []json.RawMessage) [][]byte {
	items := make([][]byte, len(raw))
	for i, r := range raw {
		items[i] = r
	}
	return items
}

// scanBatch splits {"batch":[{...},{...}]} written with no spaces; the objects are
// only delimited here (each is then read by its own decoder, which checks it).
func scanBatch(data []byte) ([][]byte, bool) {
	s := bytes.TrimRight(data, "\n")
	if !bytes.HasPrefix(s, []byte(`{"batch":[`)) || !bytes.HasSuffix(s, []byte("]}")) {
		return nil, false
	}
	rest := s[len(`{"batch":[`) : len(s)-2]
	var items [][]byte
	for len(rest) > 0 && rest[0] == '{' {
		end, ok := objectEnd(rest)
		if !ok {
			return nil, false
		}
		items = append(items, rest[:end])
		rest = rest[end:]
		if len(rest) == 0 {
			return items, true
		}
		if rest[0] != ',' || len(rest) == 1 {
			return nil, false
		}
		rest = rest[1:]
	}
	return nil, false
}

// decodeDeliverRequests reads a deliver body, single or batch (then batch is true):
// the scanners for what this package writes, else encoding/json, once, for any other
// valid form.
func decodeDeliverRequests(data []byte) (reqs []deliverRequest, batch bool, err error) {
	items, ok := scanBatch(data)
	if !ok {
		if b, ok := scanDeliverBody(data); ok {
			return []deliverRequest{b}, false, nil
		}
		var v struct {
			deliverRequest
			Batch []json.RawMessage `json:"batch"`
		}
		if err := json.Unmarshal(data, &v); err != nil {
			return nil, false, err
		}
		if v.Batch == nil {
			return []deliverRequest{v.deliverRequest}, false, nil
		}
		items = rawItems(v.Batch)
	}
	if len(items) == 0 {
		return nil, true, errors.New("empty batch")
	}
	reqs = make([]deliverRequest, len(items))
	for i, item := range items {
		if reqs[i], err = decodeDeliverBody(item); err != nil {
			return nil, true, err
		}
	}
	return reqs, true, nil
}
