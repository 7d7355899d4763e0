// Package metrics holds the Prometheus collectors of one host. Each host gets its own
// registry (chatd dev runs three hosts in one process), so there is no global state.
package metrics

import (
	"database/sql"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are one host's collectors. Names are prefixed switchboard_.
type Metrics struct {
	Registry *prometheus.Registry

	HTTPRequests *prometheus.CounterVec   // route, method, status
	HTTPDuration *prometheus.HistogramVec // route, method

	Connections   prometheus.Gauge
	FramesIn      *prometheus.CounterVec // type
	FramesOut     *prometheus.CounterVec // type
	Sends         *prometheus.CounterVec // result: created, repeat, error code
	Deliveries    *prometheus.CounterVec // result: local, remote, not_connected, failed, stale
	DeliverTime   prometheus.Histogram   // whole fan-out of one message
	InternalCall  *prometheus.HistogramVec
	DeliverBatch  prometheus.Histogram // messages per deliver call to a host that takes batches
	InternalRetry prometheus.Counter
	SlowClosed    prometheus.Counter
	Stage         *prometheus.HistogramVec // stage of the send path
	Handoffs      *prometheus.CounterVec   // recorded, repaired
	Closes        *prometheus.CounterVec   // code
}

// latency buckets from 50 µs to 5 s: the send path lives in the sub-millisecond range.
var latency = []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}

// New creates a registry with process and Go collectors and every Switchboard metric.
func New() *Metrics {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collectors.NewGoCollector())
	f := func(c prometheus.Collector) { r.MustRegister(c) }
	m := &Metrics{Registry: r}
	m.HTTPRequests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_http_requests_total", Help: "HTTP requests by route, method and status."}, []string{"route", "method", "status"})
	m.HTTPDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "switchboard_http_request_seconds", Help: "HTTP request latency by route.", Buckets: latency}, []string{"route", "method"})
	m.Connections = prometheus.NewGauge(prometheus.GaugeOpts{Name: "switchboard_ws_connections", Help: "Live WebSocket connections on this host."})
	m.FramesIn = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_ws_frames_in_total", Help: "Frames received by type."}, []string{"type"})
	m.FramesOut = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_ws_frames_out_total", Help: "Frames queued to sockets by type."}, []string{"type"})
	m.Sends = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_sends_total", Help: "Send attempts by result (created, repeat, or the error code)."}, []string{"result"})
	m.Deliveries = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_deliveries_total", Help: "Per-connection deliveries by result: local, remote, not_connected, failed, stale."}, []string{"result"})
	m.DeliverTime = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "switchboard_deliver_seconds", Help: "Fan-out of one message to every host, from presence lookup to the last ack.", Buckets: latency})
	m.InternalCall = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "switchboard_internal_call_seconds", Help: "Host-to-host calls by path and outcome.", Buckets: latency}, []string{"path", "outcome"})
	m.DeliverBatch = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "switchboard_deliver_batch_messages", Help: "Messages carried by each deliver call to a host that takes batches (concurrent sends to one host share a call).", Buckets: []float64{1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64}})
	m.InternalRetry = prometheus.NewCounter(prometheus.CounterOpts{Name: "switchboard_internal_retries_total", Help: "Retried host-to-host calls."})
	m.SlowClosed = prometheus.NewCounter(prometheus.CounterOpts{Name: "switchboard_ws_slow_closed_total", Help: "Sockets closed with 1013 because their send queue filled or a write timed out."})
	m.Stage = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "switchboard_send_stage_seconds", Help: "Time of each stage of the send path: validate, store, presence, local, remote, write.", Buckets: latency}, []string{"stage"})
	m.Handoffs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_handoffs_total", Help: "Missed hand-offs recorded for other hosts, and repaired here."}, []string{"event"})
	m.Closes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_ws_closes_total", Help: "Sockets closed by the server, by close code."}, []string{"code"})
	for _, c := range []prometheus.Collector{m.HTTPRequests, m.HTTPDuration, m.Connections, m.FramesIn, m.FramesOut, m.Sends, m.Deliveries, m.DeliverTime, m.InternalCall, m.DeliverBatch, m.InternalRetry, m.SlowClosed, m.Stage, m.Handoffs, m.Closes} {
		f(c)
	}
	return m
}

// WatchRedisPipelines exports the counts of the hot path's shared Redis pipelines
// (stats is redis.Store.PipelineStats): commands over pipelines is how many sends
// shared each round trip, the figure that says whether batching is working under load.
func (m *Metrics) WatchRedisPipelines(stats func() (pipelines, commands int64)) {
	m.watchBatches(stats,
		"switchboard_redis_pipelines_total", "Pipelines the send path sent to Redis (rate limits and presence lookups of concurrent sends share them).",
		"switchboard_redis_pipelined_commands_total", "Commands those pipelines carried.")
}

// WatchCommits exports the group commit's counts (stats is postgres.DB.CommitStats):
// messages over batches is how many sends shared each transaction and its WAL flush.
func (m *Metrics) WatchCommits(stats func() (batches, messages int64)) {
	m.watchBatches(stats,
		"switchboard_commit_batches_total", "Transactions the group commit stored messages in (concurrent sends share them).",
		"switchboard_committed_messages_total", "Messages those transactions carried.")
}

// watchBatches registers two counters read at scrape from stats: the batches a
// batching mechanism ran and the items they carried.
func (m *Metrics) watchBatches(stats func() (batches, items int64), batchesName, batchesHelp, itemsName, itemsHelp string) {
	m.Registry.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: batchesName, Help: batchesHelp},
			func() float64 { b, _ := stats(); return float64(b) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: itemsName, Help: itemsHelp},
			func() float64 { _, n := stats(); return float64(n) }))
}

// WatchDBPool exports the PostgreSQL connection pool: a pool at its limit makes every
// store call queue, and waits that grow are how that shows before sends time out.
func (m *Metrics) WatchDBPool(stats func() sql.DBStats) {
	gauge := func(name, help string, v func(sql.DBStats) int) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return float64(v(stats())) })
	}
	m.Registry.MustRegister(
		gauge("switchboard_db_connections_max", "PostgreSQL connections this host may open (CHAT_DB_MAX_CONNS).",
			func(s sql.DBStats) int { return s.MaxOpenConnections }),
		gauge("switchboard_db_connections_open", "PostgreSQL connections open now.", func(s sql.DBStats) int { return s.OpenConnections }),
		gauge("switchboard_db_connections_in_use", "PostgreSQL connections in use now.", func(s sql.DBStats) int { return s.InUse }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "switchboard_db_connection_waits_total", Help: "Store calls that waited for a free connection."},
			func() float64 { return float64(stats().WaitCount) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "switchboard_db_connection_wait_seconds_total", Help: "Time store calls spent waiting for a free connection."},
			func() float64 { return stats().WaitDuration.Seconds() }))
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
}

// ObserveStage records how long a send-path stage took since start.
func (m *Metrics) ObserveStage(stage string, start time.Time) {
	m.Stage.WithLabelValues(stage).Observe(time.Since(start).Seconds())
}
