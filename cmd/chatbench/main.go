// Command chatbench is Switchboard's load generator: it drives a running cluster
// through the public contract only (the HTTP API and /ws of PROTOCOL.md, never the
// stores or the internal listener), open-loop at a fixed offered rate, measures
// latency from the sender's write to the receiver's read on one clock, and verifies
// that every receiver got every message exactly once (after dedupe) and in order.
//
//	chatbench oneone  --rate 1000 --duration 10s
//	chatbench ramp    --rates 500,1000,2000,5000
//	chatbench fanout  --members 100 --rate 1000
//	chatbench idle    --conns 10000
//	chatbench catchup --backlog 10000
//	chatbench storm   --conns 3000 --kill-pid PID
//	chatbench summarize --out results.json --md results.md run1.json run2.json...
//	chatbench chart --out charts results.json
//
// Exit status: 0 pass, 1 verification failed or the run could not be done, 2 usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: chatbench SCENARIO [flags]

scenarios (each finishes in under a minute with its defaults):
  oneone    pairs of users on different hosts, --rate messages/s in total
  ramp      oneone at rising --rates until p99 > --max-p99 or a message is lost
  fanout    one thread of --members spread over the hosts, senders on the first host
  idle      --conns idle sockets: resident memory per socket per host, time to connect
  catchup   --backlog messages over --threads arrive while a user is offline; it connects
  storm     --conns sockets on one host, which is killed (--kill-pid or --kill-cmd)
  summarize combine --json files of runs into one JSON and a Markdown table
  chart     draw latency-vs-rate.svg and latency-cdf.svg from results (--out DIR)
  compare   runs of two builds taken in turns: medians, and pairs won with a sign test

Run 'chatbench SCENARIO -h' for the flags. Setup uses only the public API: the
cluster must allow many registrations (CHAT_LIMIT_AUTH_PER_MINUTE) and should hash
with CHAT_BCRYPT_COST=4; scripts/bench.sh starts such a cluster.
`

// tools are the subcommands that work on results rather than a cluster.
var tools = map[string]func(args []string, stdout, stderr io.Writer) error{
	"summarize": summarize,
	"compare":   compare,
	"chart":     chart,
}

// run is main without the process; it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	scenario, rest := args[0], args[1:]
	if scenario == "-h" || scenario == "--help" || scenario == "help" {
		fmt.Fprint(stdout, usage)
		return 0
	}
	if tool, ok := tools[scenario]; ok {
		err := tool(rest, stdout, stderr)
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		if err != nil {
			fmt.Fprintf(stderr, "chatbench %s: %v\n", scenario, err)
			return 1
		}
		return 0
	}
	fn, ok := scenarios[scenario]
	if !ok {
		fmt.Fprintf(stderr, "chatbench: unknown scenario %q\n\n%s", scenario, usage)
		return 2
	}
	opt, err := parseOptions(scenario, rest, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "chatbench %s: %v\n", scenario, err)
		return 2
	}
	raiseFileLimit(stderr)
	if opt.cpuProfile != "" {
		stop, err := startCPUProfile(opt.cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "chatbench: %v\n", err)
			return 1
		}
		defer stop()
	}
	b := newBench(opt, stdout, stderr)
	res := newResult(b)
	ru := rusageNow()
	err = fn(ctx, b, res)
	res.Generator.CPUSeconds = rusageNow() - ru
	if err != nil {
		res.Failures = append(res.Failures, err.Error())
	}
	res.finish()
	res.print(stdout)
	if opt.jsonPath != "" {
		if werr := res.writeJSON(opt.jsonPath); werr != nil {
			fmt.Fprintf(stderr, "chatbench: %v\n", werr)
			return 1
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "chatbench %s: %v\n", scenario, err)
	}
	if !res.Pass {
		return 1
	}
	return 0
}

var scenarios = map[string]func(context.Context, *bench, *Result) error{
	"oneone":  runOneOne,
	"ramp":    runRamp,
	"fanout":  runFanout,
	"idle":    runIdle,
	"catchup": runCatchup,
	"storm":   runStorm,
}

// options are the flags of one run.
type options struct {
	scenario         string
	hosts            []string
	front            string
	rate             float64
	duration         time.Duration
	warmup           time.Duration
	users            int
	jsonPath         string
	metrics          bool
	prefix           string
	size             int
	grace            time.Duration
	perSender        float64
	setupConcurrency int
	dialConcurrency  int
	connectTimeout   time.Duration
	redisURL         string
	databaseURL      string
	floorN           int
	quiet            bool
	cpuProfile       string
	backoffBase      time.Duration
	backoffCap       time.Duration

	rates  []float64 // ramp
	step   time.Duration
	maxP99 time.Duration

	members int // fanout
	senders int

	conns          int // idle, storm
	socketsPerUser int
	settle         time.Duration
	hold           time.Duration

	backlog int // catchup
	threads int

	victim       int // storm
	killPID      int
	killCmd      string
	killAfter    time.Duration
	stormTimeout time.Duration
}

// targets are where sockets and API calls go: the front door, or the hosts.
func (o *options) targets() []string {
	if o.front != "" {
		return []string{o.front}
	}
	return o.hosts
}

const defaultHosts = "http://127.0.0.1:8081,http://127.0.0.1:8082,http://127.0.0.1:8083"

func parseOptions(scenario string, args []string, stderr io.Writer) (*options, error) {
	o := &options{scenario: scenario}
	fs := flag.NewFlagSet("chatbench "+scenario, flag.ContinueOnError)
	fs.SetOutput(stderr)
	hosts := fs.String("hosts", defaultHosts, "public URLs of the hosts, comma-separated; sockets are spread over them")
	fs.StringVar(&o.front, "front", "", "a front door URL: every socket and API call goes there (metrics still come from --hosts)")
	defRate, defDur := 1000.0, 10*time.Second
	switch scenario {
	case "storm":
		defRate, defDur = 200, 20*time.Second
	case "catchup":
		defDur = 0
	}
	fs.Float64Var(&o.rate, "rate", defRate, "offered messages per second in total (catchup: how fast the backlog is sent)")
	fs.DurationVar(&o.duration, "duration", defDur, "how long the load runs")
	fs.DurationVar(&o.warmup, "warmup", 3*time.Second, "oneone/ramp/fanout: load at the (first) rate before the measured phase, verified like it but outside its numbers, so that a fresh cluster's pools, caches and heaps are not what the run measures (0: none)")
	fs.IntVar(&o.users, "users", 0, "sending users (0: ceil(rate / per-sender-rate)); idle/storm: users the sockets belong to (0: conns / sockets-per-user)")
	fs.StringVar(&o.jsonPath, "json", "", "write every number of the run to this JSON file")
	fs.BoolVar(&o.metrics, "metrics", true, "scrape each host's /metrics before and after and print where the time goes")
	fs.StringVar(&o.prefix, "prefix", defaultPrefix(), "username prefix, unique per run")
	fs.IntVar(&o.size, "size", 64, "message body bytes")
	fs.DurationVar(&o.grace, "grace", 10*time.Second, "after the last send, how long to wait for answers and deliveries")
	fs.Float64Var(&o.perSender, "per-sender-rate", 15, "messages per second per sending user (the send limit is 20/s, burst 40)")
	fs.IntVar(&o.setupConcurrency, "setup-concurrency", 16, "parallel API calls during setup")
	fs.IntVar(&o.dialConcurrency, "dial-concurrency", 64, "parallel WebSocket dials when connecting")
	fs.DurationVar(&o.connectTimeout, "connect-timeout", 60*time.Second, "how long connecting every socket may take")
	fs.StringVar(&o.redisURL, "redis-url", "", "measure a raw Redis PING here as the floor (not a product call)")
	fs.StringVar(&o.databaseURL, "database-url", "", "measure a raw PostgreSQL INSERT here as the floor (creates and drops table chatbench_floor)")
	fs.IntVar(&o.floorN, "floor-n", 1000, "round trips per floor measurement")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress lines")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write chatbench's own CPU profile here (is the generator efficient?)")
	fs.DurationVar(&o.backoffBase, "backoff-base", 250*time.Millisecond, "reconnect backoff: full jitter in [0, min(cap, base*2^attempt)]")
	fs.DurationVar(&o.backoffCap, "backoff-cap", 5*time.Second, "reconnect backoff cap")
	rates := fs.String("rates", "500,1000,1500,2000,2500,3000,3500,4000,4500,5000,6000,7500,10000", "ramp: offered rates, in order")
	fs.DurationVar(&o.step, "step", 5*time.Second, "ramp: duration of each rate")
	fs.DurationVar(&o.maxP99, "max-p99", 50*time.Millisecond, "ramp: a rate is held while p99 stays at or below this (and nothing is lost)")
	fs.IntVar(&o.members, "members", 100, "fanout: members of the thread")
	fs.IntVar(&o.senders, "senders", 0, "fanout: how many members send (0: ceil(rate / per-sender-rate))")
	defConns := 10000
	if scenario == "storm" {
		defConns = 3000
	}
	fs.IntVar(&o.conns, "conns", defConns, "idle/storm: sockets")
	fs.IntVar(&o.socketsPerUser, "sockets-per-user", 20, "idle/storm: sockets per user (CHAT_LIMIT_SOCKETS_PER_USER allows 20 by default)")
	fs.DurationVar(&o.settle, "settle", 5*time.Second, "idle: wait before each memory reading so GC settles")
	fs.DurationVar(&o.hold, "hold", 0, "idle: keep the sockets open this long after measuring (to profile the hosts)")
	fs.IntVar(&o.backlog, "backlog", 10000, "catchup: messages sent while the user is offline")
	fs.IntVar(&o.threads, "threads", 10, "catchup: threads the backlog is spread over")
	fs.IntVar(&o.victim, "victim", -1, "storm: index in --hosts of the host to kill (default: the last)")
	fs.IntVar(&o.killPID, "kill-pid", 0, "storm: PID of the victim host, killed with SIGKILL")
	fs.StringVar(&o.killCmd, "kill-cmd", "", "storm: shell command that stops the victim host (instead of --kill-pid)")
	fs.DurationVar(&o.killAfter, "kill-after", 5*time.Second, "storm: when into the load the victim is killed")
	fs.DurationVar(&o.stormTimeout, "storm-timeout", 60*time.Second, "storm: how long the clients may take to be back")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for _, h := range strings.Split(*hosts, ",") {
		if h = strings.TrimRight(strings.TrimSpace(h), "/"); h != "" {
			o.hosts = append(o.hosts, h)
		}
	}
	o.front = strings.TrimRight(o.front, "/")
	if len(o.hosts) == 0 && o.front == "" {
		return nil, errors.New("--hosts or --front is required")
	}
	for _, r := range strings.Split(*rates, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(r), 64)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("--rates: bad rate %q", r)
		}
		o.rates = append(o.rates, v)
	}
	switch {
	case o.rate <= 0 || math.IsInf(o.rate, 0) || math.IsNaN(o.rate):
		return nil, errors.New("--rate must be positive")
	case o.perSender <= 0:
		return nil, errors.New("--per-sender-rate must be positive")
	case len(o.prefix) < 2 || len(o.prefix) > 16 || strings.Trim(o.prefix, "abcdefghijklmnopqrstuvwxyz0123456789_.-") != "":
		return nil, errors.New("--prefix must be 2..16 of [a-z0-9_.-] (usernames are PREFIX-ROLEn, at most 32)")
	case o.size < 24 || o.size > 8000:
		return nil, errors.New("--size must be 24..8000 bytes")
	case o.socketsPerUser < 1:
		return nil, errors.New("--sockets-per-user must be at least 1")
	}
	if o.victim < 0 {
		o.victim = len(o.hosts) - 1
	}
	return o, nil
}

// defaultPrefix is unique per run: "cb" and the time in base 36 (8 characters).
func defaultPrefix() string {
	return "cb" + strconv.FormatInt(time.Now().UnixMilli()%2821109907456, 36) // < 36^8
}

// raiseFileLimit lifts the soft limit of open files to the hard one: every socket is
// a descriptor.
func raiseFileLimit(stderr io.Writer) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			fmt.Fprintf(stderr, "chatbench: cannot raise the open-file limit: %v\n", err)
		}
	}
}

func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path) // #nosec G304 -- the operator's own path
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); _ = f.Close() }, nil
}

func rusageNow() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}
