#!/usr/bin/env bash
# scripts/bench.sh: run chatbench's standard matrix (issue 6) against a private
# three-host cluster on real PostgreSQL and Redis, and write the results.
#
#   scripts/bench.sh              the full matrix (several minutes)
#   scripts/bench.sh --quick      a short subset (about two minutes)
#   scripts/bench.sh --smoke      one short oneone run: zero loss, no latency assertion
#   scripts/bench.sh --up         start the cluster, print its URLs and PIDs, wait for Ctrl-C
#   scripts/bench.sh --keep ...   keep the sb_bench database and the logs afterwards
#   scripts/bench.sh --relay ...  the same, against cmd/barerelay (issue 6's reference
#                                 relay) instead of chatd: oneone, ramp and fanout only
#   scripts/bench.sh --vs REV     this working tree against commit REV: two clusters side
#                                 by side, oneone runs (or BENCH_VS_SCENARIO's) taken in
#                                 turns (--pairs N, default 6), then `chatbench compare`
#                                 of the two sides
#   scripts/bench.sh --vs relay   the same against cmd/barerelay (issue 6's reference
#                                 relay) built from this tree: how far from it we are
#                                 on this boot, with a sign test
#
# What it does:
#   1. builds chatd (or barerelay) and chatbench into a temp dir;
#   2. creates a fresh database sb_bench on the server of TEST_DATABASE_URL and uses a
#      fresh key prefix on TEST_REDIS_URL (nothing else there is touched);
#   3. starts 3 `chatd serve` on 127.0.0.1: public 8081-8083, internal 9081-9083, with
#      CHAT_BCRYPT_COST=4 (fast test users), CHAT_LIMIT_AUTH_PER_MINUTE=100000 (setup
#      registers thousands of users from one address), CHAT_LIMIT_SOCKETS_PER_USER=1000
#      and CHAT_LOG_LEVEL=warn; the per-user send limit (20/s) stays;
#   4. runs the matrix, one `chatbench SCENARIO --json` per run, then combines them
#      into docs/bench/results/DATE-HOST.json and DATE-HOST.md and draws the charts
#      (latency-vs-rate.svg, latency-cdf.svg) into docs/bench/results/charts/
#      (--quick: charts-quick/);
#   5. stops the cluster, drops the database and deletes the Redis keys (trap).
#
# Environment:
#   TEST_DATABASE_URL  postgres URL of a server where this role may CREATE DATABASE
#                      (default postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable)
#   TEST_REDIS_URL     redis URL (default redis://127.0.0.1:6379/0)
#   BENCH_DB           name of the private database (default sb_bench; two bench clusters at once need two)
#   BENCH_PORT_BASE    public ports are BASE+1..3, internal BASE+1001..1003 (default 8080);
#                      --vs puts REV's cluster on BASE+11..13 and BASE+1011..1013 for the
#                      first half of the pairs, then the two clusters swap ports
#   BENCH_VS_RATE      --vs: the offered rate of each run (default 1000 msg/s; fanout 1100)
#   BENCH_VS_SCENARIO  --vs: oneone (default) or fanout (100 members, as in the matrix)
#   BENCH_PPROF=true   serve /debug/pprof on the internal listeners (signed requests only)
#   BENCH_OUT          results directory (default docs/bench/results)
#   BENCH_QUIET_WAIT   seconds to wait before each run for the machine to be idle (120)
#   BENCH_HOST_GOMAXPROCS  GOMAXPROCS of each host (default 1). Three hosts, both stores
#                      and the generator share this machine's two cores, the way three
#                      1-CPU containers would (where Go sets GOMAXPROCS=1 by itself).
#                      With 2, each idle P made the runtime wake and park threads for
#                      every ready goroutine: at 1,000 msg/s the hosts switched context
#                      296,000 times in 10 s instead of 202,000 and used 13-15% more CPU.
#                      Empty: the Go default (the machine's CPUs).
#
# Not part of .ci/run (it takes minutes and measures the machine); --smoke is the
# short check CI can afford.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

MODE=full
KEEP=""
SERVER=chatd
VS_REV=""
VS_KIND=chatd # --vs relay: barerelay
VS_NAME="" # what the other side is, for messages
PAIRS=6
while (($# > 0)); do
	case "$1" in
	--quick) MODE=quick ;;
	--smoke) MODE=smoke ;;
	--up) MODE=up ;;
	--keep) KEEP=1 ;;
	--relay) SERVER=relay ;;
	--vs)
		(($# >= 2)) || { echo "bench.sh: --vs needs a commit" >&2; exit 2; }
		MODE=vs VS_REV=$2
		shift
		;;
	--pairs)
		[[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || { echo "bench.sh: --pairs needs a whole number" >&2; exit 2; }
		PAIRS=$2
		shift
		;;
	-h | --help)
		sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "bench.sh: unknown argument $1 (see --help)" >&2
		exit 2
		;;
	esac
	shift
done

TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}"
TEST_REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379/0}"
PORT_BASE="${BENCH_PORT_BASE:-8080}"
OUT_DIR="${BENCH_OUT:-docs/bench/results}"
DB_NAME="${BENCH_DB:-sb_bench}"
REDIS_PREFIX="sbbench$(date +%s):"
HOSTS_N=3
HOST_PROCS="${BENCH_HOST_GOMAXPROCS-1}"
# --vs: the second cluster's own database and key prefix (a prefix of its own, not one
# nested under the first, so neither cluster's key scans can see the other's keys).
DB_NAME_VS="${DB_NAME}_vs"
REDIS_PREFIX_VS="sbbenchvs$(date +%s):"
[[ "$MODE" == vs && "$SERVER" == relay ]] && { echo "bench.sh: --vs compares chatd builds, not the relay" >&2; exit 2; }
if [[ "$MODE" == vs && "$VS_REV" == relay ]]; then
	VS_KIND=relay VS_COMMIT="" VS_NAME="the bare relay"
elif [[ "$MODE" == vs ]]; then
	VS_COMMIT=$(git rev-parse --verify --quiet "$VS_REV^{commit}") || { echo "bench.sh: --vs: no commit $VS_REV" >&2; exit 2; }
	VS_NAME="chatd at $VS_REV (${VS_COMMIT:0:12})"
fi
if [[ "$MODE" == vs && ! "${BENCH_VS_SCENARIO:-oneone}" =~ ^(oneone|fanout)$ ]]; then
	echo "bench.sh: BENCH_VS_SCENARIO must be oneone or fanout, not ${BENCH_VS_SCENARIO}" >&2
	exit 2
fi

info() { printf '==> %s\n' "$*" >&2; }
die() {
	printf 'bench.sh: %s\n' "$*" >&2
	exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }

# with_db URL NAME: the URL with its database path replaced by NAME.
with_db() {
	local url=$1 name=$2 base query=""
	base=${url%%\?*}
	[[ "$url" == *\?* ]] && query="?${url#*\?}"
	local scheme=${base%%://*} rest=${base#*://}
	local authority=${rest%%/*}
	printf '%s://%s/%s%s' "$scheme" "$authority" "$name" "$query"
}

have go || die "Go is not installed (see scripts/test.sh for the install command)"
have psql || die "psql is needed to create the bench database (apt-get install postgresql-client)"
have redis-cli || die "redis-cli is needed to check and clean Redis (apt-get install redis-tools)"

psql -X "$TEST_DATABASE_URL" -Atqc 'select 1' >/dev/null 2>&1 ||
	die "PostgreSQL at TEST_DATABASE_URL does not answer (scripts/test.sh can start one)"
[[ "$(redis-cli --no-auth-warning -u "$TEST_REDIS_URL" ping 2>/dev/null)" == PONG ]] ||
	die "Redis at TEST_REDIS_URL does not answer"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/switchboard-bench.XXXXXX")
PIDS=()
DB_CREATED=""
DB_VS_CREATED=""

# stop_pids I...: the hosts at those indexes of PIDS, all SIGTERMed at once (they
# drain), each SIGKILLed if still there after 20 s.
stop_pids() {
	local i
	for i in "$@"; do
		[[ -n "${PIDS[i]:-}" ]] && kill -TERM "${PIDS[i]}" 2>/dev/null
	done
	for i in "$@"; do
		[[ -z "${PIDS[i]:-}" ]] && continue
		for _ in $(seq 1 200); do
			kill -0 "${PIDS[i]}" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "${PIDS[i]}" 2>/dev/null || true
		wait "${PIDS[i]}" 2>/dev/null || true
		PIDS[i]=""
	done
	return 0
}
stop_clusters() { stop_pids "${!PIDS[@]}"; } # every host of both clusters

cleanup() {
	local rc=$?
	set +e
	stop_clusters
	local prefix
	for prefix in "$REDIS_PREFIX" "$REDIS_PREFIX_VS"; do
		redis-cli --no-auth-warning -u "$TEST_REDIS_URL" --scan --pattern "${prefix}*" 2>/dev/null |
			xargs -r -n 500 redis-cli --no-auth-warning -u "$TEST_REDIS_URL" del >/dev/null 2>&1
	done
	if [[ -n "$KEEP" ]]; then
		info "kept: database $DB_NAME${DB_VS_CREATED:+ and $DB_NAME_VS}, logs in $WORK"
	else
		[[ -n "$DB_CREATED" ]] && psql -X "$TEST_DATABASE_URL" -qc "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" >/dev/null 2>&1
		[[ -n "$DB_VS_CREATED" ]] && psql -X "$TEST_DATABASE_URL" -qc "DROP DATABASE IF EXISTS $DB_NAME_VS WITH (FORCE)" >/dev/null 2>&1
		rm -rf "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- build -----------------------------------------------------------------------------
info "building $SERVER and chatbench"
if [[ "$SERVER" == relay ]]; then
	go build -o "$WORK/barerelay" ./cmd/barerelay
else
	go build -o "$WORK/chatd" ./cmd/chatd
fi
go build -o "$WORK/chatbench" ./cmd/chatbench
BENCH="$WORK/chatbench"
if [[ "$VS_KIND" == relay ]]; then
	info "building barerelay"
	mkdir -p "$WORK/vs"
	go build -o "$WORK/vs/barerelay" ./cmd/barerelay
elif [[ "$MODE" == vs ]]; then
	# REV's tree as committed, built with its own go.mod: what it was, not what it
	# would be with this tree's dependencies.
	info "building $VS_NAME"
	mkdir -p "$WORK/src-vs"
	git archive "$VS_COMMIT" | tar -x -C "$WORK/src-vs"
	# Named chatd too, so that chatbench's CPU by process name counts both builds alike.
	mkdir -p "$WORK/vs"
	(cd "$WORK/src-vs" && go build -o "$WORK/vs/chatd" ./cmd/chatd)
fi

# ---- stores ----------------------------------------------------------------------------
info "fresh database $DB_NAME; Redis prefix $REDIS_PREFIX"
export PGOPTIONS="--client-min-messages=warning"
psql -X "$TEST_DATABASE_URL" -qc "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" >/dev/null
psql -X "$TEST_DATABASE_URL" -qc "CREATE DATABASE $DB_NAME" >/dev/null
DB_CREATED=1
DATABASE_URL=$(with_db "$TEST_DATABASE_URL" "$DB_NAME")
SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')

export CHAT_DATABASE_URL="$DATABASE_URL" CHAT_REDIS_URL="$TEST_REDIS_URL" CHAT_REDIS_PREFIX="$REDIS_PREFIX" \
	CHAT_CLUSTER_SECRET="$SECRET" CHAT_AUTO_MIGRATE=false CHAT_BCRYPT_COST=4 \
	CHAT_LIMIT_AUTH_PER_MINUTE=100000 CHAT_LIMIT_SOCKETS_PER_USER=1000 CHAT_LOG_LEVEL=warn \
	CHAT_PPROF="${BENCH_PPROF:-false}"
if [[ "$SERVER" == chatd ]]; then
	"$WORK/chatd" migrate >"$WORK/migrate.log" 2>&1 || {
		cat "$WORK/migrate.log" >&2
		die "chatd migrate failed"
	}
fi
if [[ "$MODE" == vs ]]; then
	# Each host's pool opens up to CHAT_DB_MAX_CONNS (20) connections (docs/operations.md):
	# six hosts need more than the server's default 100, or a burst of catch-ups or of
	# setup's thread creations fails with "too many clients already" and the run with
	# it. When both builds read the setting and it was not given, both get the largest
	# pool the server holds for six hosts (ten connections spare); the same on both
	# sides, so the comparison stays fair. The relay (-db-max-conns) gets the same pool.
	maxconn=$(psql -X "$TEST_DATABASE_URL" -Atqc 'show max_connections')
	pool=${CHAT_DB_MAX_CONNS:-20}
	if ((maxconn < 2 * HOSTS_N * pool + 10)); then
		fit=$(((maxconn - 10) / (2 * HOSTS_N)))
		if [[ -z "${CHAT_DB_MAX_CONNS:-}" ]] && ((fit >= 2)) && { [[ "$VS_KIND" == relay ]] ||
			grep -rqs CHAT_DB_MAX_CONNS "$WORK/src-vs/pkg/config"; } && grep -rqs CHAT_DB_MAX_CONNS "$ROOT/pkg/config"; then
			export CHAT_DB_MAX_CONNS=$fit
			info "PostgreSQL allows $maxconn connections: each host of both clusters gets a pool of $fit (CHAT_DB_MAX_CONNS)"
		else
			info "WARNING: PostgreSQL allows $maxconn connections and the two clusters may open $((2 * HOSTS_N * pool));" \
				"a run that fails with 'too many clients already' in the host logs (--keep) is this, not the code." \
				"When both builds have CHAT_DB_MAX_CONNS, set it lower in the environment (e.g. 12)."
		fi
	fi
	RELAY_DB_CONNS=${CHAT_DB_MAX_CONNS:-20}
	info "fresh database $DB_NAME_VS; Redis prefix $REDIS_PREFIX_VS ($VS_NAME)"
	psql -X "$TEST_DATABASE_URL" -qc "DROP DATABASE IF EXISTS $DB_NAME_VS WITH (FORCE)" >/dev/null
	psql -X "$TEST_DATABASE_URL" -qc "CREATE DATABASE $DB_NAME_VS" >/dev/null
	DB_VS_CREATED=1
	DATABASE_URL_VS=$(with_db "$TEST_DATABASE_URL" "$DB_NAME_VS")
	if [[ "$VS_KIND" == chatd ]]; then # the relay makes its own table
		CHAT_DATABASE_URL="$DATABASE_URL_VS" "$WORK/vs/chatd" migrate >"$WORK/migrate-vs.log" 2>&1 || {
			cat "$WORK/migrate-vs.log" >&2
			die "chatd migrate (at $VS_REV) failed"
		}
	fi
fi

# ---- cluster ---------------------------------------------------------------------------
# Sockets are file descriptors: lift the soft limit for the hosts and the generator.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

HOSTS=()
HOSTS_VS=()
# --vs: the two clusters take two slots, ports BASE+1.. (started first) and BASE+11..;
# halfway through the pairs they swap (SWAPPED=1), so that whatever a slot does to a
# run (its ports, being started first) falls on both builds alike.
SWAPPED=0
slot_offset() { # slot_offset SIDE (here|vs): 0 or 10, the port offset of SIDE's slot now
	local vs=0
	[[ "$1" == vs ]] && vs=1
	if ((vs != SWAPPED)); then echo 10; else echo 0; fi
}
start_host() { # start_host I [vs]: host I (1-based) in the background; sets PIDS[I-1] (vs: PIDS[N+I-1])
	local i=$1 side=${2:-here} off pub int
	off=$(slot_offset "$side")
	pub=$((PORT_BASE + off + i)) int=$((PORT_BASE + 1000 + off + i))
	if [[ "$side" == vs && "$VS_KIND" == relay ]]; then # the relay, beside this tree's cluster
		env ${HOST_PROCS:+GOMAXPROCS="$HOST_PROCS"} "$WORK/vs/barerelay" -public "127.0.0.1:$pub" \
			-internal "127.0.0.1:$int" -redis "$TEST_REDIS_URL" -prefix "$REDIS_PREFIX_VS" \
			-database "$DATABASE_URL_VS" -db-max-conns "$RELAY_DB_CONNS" >>"$WORK/chatd-vs$i.log" 2>&1 &
		PIDS[HOSTS_N + i - 1]=$!
		return
	fi
	if [[ "$side" == vs ]]; then # REV's cluster, beside this one
		env ${HOST_PROCS:+GOMAXPROCS="$HOST_PROCS"} CHAT_DATABASE_URL="$DATABASE_URL_VS" CHAT_REDIS_PREFIX="$REDIS_PREFIX_VS" \
			CHAT_HOST_ID="benchvs$i" CHAT_PUBLIC_ADDR="127.0.0.1:$pub" CHAT_INTERNAL_ADDR="127.0.0.1:$int" \
			"$WORK/vs/chatd" serve >>"$WORK/chatd-vs$i.log" 2>&1 &
		PIDS[HOSTS_N + i - 1]=$!
		return
	fi
	# GOMAXPROCS only when set (an empty one is not the default to the runtime); env
	# execs chatd, so $! is still the host's PID (storm kills it).
	if [[ "$SERVER" == relay ]]; then
		env ${HOST_PROCS:+GOMAXPROCS="$HOST_PROCS"} "$WORK/barerelay" -public "127.0.0.1:$pub" \
			-internal "127.0.0.1:$int" -redis "$TEST_REDIS_URL" -prefix "$REDIS_PREFIX" \
			-database "$DATABASE_URL" >>"$WORK/chatd$i.log" 2>&1 &
	else
		env ${HOST_PROCS:+GOMAXPROCS="$HOST_PROCS"} \
			CHAT_HOST_ID="bench$i" CHAT_PUBLIC_ADDR="127.0.0.1:$pub" CHAT_INTERNAL_ADDR="127.0.0.1:$int" \
			"$WORK/chatd" serve >>"$WORK/chatd$i.log" 2>&1 &
	fi
	PIDS[i - 1]=$!
}
stop_host() { stop_pids $(($1 - 1)); } # stop_host I: host I (1-based) of this tree's cluster
restart_hosts() { # fresh processes: idle measures memory added to a host that held nothing
	local i
	for i in $(seq 1 $HOSTS_N); do stop_host "$i"; done
	for i in $(seq 1 $HOSTS_N); do start_host "$i"; done
	for i in $(seq 1 $HOSTS_N); do wait_ready "${HOSTS[i - 1]}" || die "host $i did not come back"; done
}
wait_ready() { # wait_ready URL
	for _ in $(seq 1 150); do
		curl -fsS -o /dev/null "$1/readyz" 2>/dev/null && return 0
		sleep 0.2
	done
	return 1
}
# start_clusters: this tree's hosts (and, with --vs, REV's) in their current slots,
# the slot at BASE+1.. first; returns when all are ready. Sets HOSTS, HOSTS_VS,
# HOST_LIST and VS_LIST.
start_clusters() {
	local sides=(here) side i pub
	[[ "$MODE" == vs ]] && sides=(here vs)
	((SWAPPED == 1)) && sides=(vs here)
	HOSTS=() HOSTS_VS=()
	for side in "${sides[@]}"; do
		for i in $(seq 1 $HOSTS_N); do
			pub=$((PORT_BASE + $(slot_offset "$side") + i))
			if (exec 3<>"/dev/tcp/127.0.0.1/$pub") 2>/dev/null; then
				die "port $pub is taken (a chatd dev running?); set BENCH_PORT_BASE"
			fi
			if [[ "$side" == vs ]]; then HOSTS_VS+=("http://127.0.0.1:$pub"); else HOSTS+=("http://127.0.0.1:$pub"); fi
			start_host "$i" "$side"
		done
	done
	for i in $(seq 1 $HOSTS_N); do
		wait_ready "${HOSTS[i - 1]}" || {
			tail -n 20 "$WORK/chatd$i.log" >&2
			die "host $i did not become ready"
		}
		[[ "$MODE" == vs ]] || continue
		wait_ready "${HOSTS_VS[i - 1]}" || {
			tail -n 20 "$WORK/chatd-vs$i.log" >&2
			die "host $i of $VS_NAME did not become ready"
		}
	done
	HOST_LIST=$(
		IFS=,
		echo "${HOSTS[*]}"
	)
	VS_LIST=$(
		IFS=,
		echo "${HOSTS_VS[*]}"
	)
}
start_clusters
info "cluster up: $HOST_LIST${VS_LIST:+ and, $VS_NAME, $VS_LIST} (PIDs ${PIDS[*]}); logs in $WORK"

if [[ "$MODE" == up ]]; then
	printf '\nchatbench: %s\n  e.g. %s oneone --hosts %s --rate 1000 --duration 10s\n' "$BENCH" "$BENCH" "$HOST_LIST"
	printf 'host PIDs (for storm --kill-pid): %s\ninternal listeners: 127.0.0.1:%s..%s, secret in CHAT_CLUSTER_SECRET of %s/env\n' \
		"${PIDS[*]}" $((PORT_BASE + 1001)) $((PORT_BASE + 1000 + HOSTS_N)) "$WORK"
	printf 'CHAT_CLUSTER_SECRET=%s\nCHAT_DATABASE_URL=%s\nCHAT_REDIS_URL=%s\nCHAT_REDIS_PREFIX=%s\n' \
		"$SECRET" "$DATABASE_URL" "$TEST_REDIS_URL" "$REDIS_PREFIX" >"$WORK/env"
	chmod 600 "$WORK/env"
	printf 'Ctrl-C (or SIGTERM to this script) stops the cluster.\n'
	while true; do
		sleep 3600 &
		wait $! # interruptible: the traps run at once
	done
fi

# ---- matrix ----------------------------------------------------------------------------
# idle_percent SECONDS: how idle the whole machine was over SECONDS (from /proc/stat).
idle_percent() {
	local a b
	read -r -a a < <(head -1 /proc/stat)
	sleep "$1"
	read -r -a b < <(head -1 /proc/stat)
	local total=0 idle i
	for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
	idle=$((b[4] - a[4] + b[5] - a[5]))
	((total > 0)) && echo $((100 * idle / total)) || echo 100
}
# settle_disk: start each run with no writeback of other files queued on the disk.
# Every `sent` waits for a WAL flush, and on the VM a flush queued behind a burst of
# other writes took 30-100 ms. The kernel writes a dirty page back 30 s after it was
# written (vm.dirty_expire_centisecs), so the binaries built just before fell inside
# the first run: 87 MB written in 0.2 s, and a 102 ms fdatasync at that moment.
settle_disk() {
	sync
}
# wait_quiet: the generator shares the machine with the cluster; anything else running
# skews the numbers. Wait up to BENCH_QUIET_WAIT seconds (default 120) for 2 s at
# >= 85% idle, else warn and go on (each result records how busy the machine was).
wait_quiet() {
	local deadline=$((SECONDS + ${BENCH_QUIET_WAIT:-120})) idle
	settle_disk
	while :; do
		idle=$(idle_percent 2)
		((idle >= 85)) && return 0
		if ((SECONDS >= deadline)); then
			info "WARNING: the machine is busy (only ${idle}% idle) with something else; results will be skewed"
			return 0
		fi
	done
}

RUNS=()
FAILED=()
bench() { # bench NAME SCENARIO FLAGS...: one run; its JSON goes to $WORK/NAME.json
	local name=$1
	shift
	wait_quiet
	info "chatbench $*"
	if "$BENCH" "$@" --hosts "${RUN_HOSTS:-$HOST_LIST}" --json "$WORK/$name.json"; then
		:
	else
		FAILED+=("$name")
	fi
	[[ -f "$WORK/$name.json" ]] && RUNS+=("$WORK/$name.json")
	sleep 2 # let the hosts settle between runs
}
FLOOR=(--redis-url "$TEST_REDIS_URL" --database-url "$DATABASE_URL")

case "$SERVER-$MODE" in
*-vs)
	# Taken in turns, the order flipped every pair (AB BA AB ...), so that a machine
	# growing slower or faster over the runs favours neither side; and the clusters
	# swap slots halfway, since two A/A runs (the same code on both sides) leaned
	# towards the cluster on the first ports, a lean nothing in this script explained.
	VS_A=() VS_B=()
	VS_SCENARIO=${BENCH_VS_SCENARIO:-oneone}
	VS_RATE=${BENCH_VS_RATE:-1000} VS_RUN=(oneone)
	if [[ "$VS_SCENARIO" == fanout ]]; then
		VS_RATE=${BENCH_VS_RATE:-1100} VS_RUN=(fanout --members 100) # as in the matrix
	fi
	VS_RUN+=(--rate "$VS_RATE" --duration 10s)
	for p in $(seq 1 "$PAIRS"); do
		if ((PAIRS >= 2 && p == PAIRS / 2 + 1)); then
			info "swapping the clusters' slots: this tree to ports $((PORT_BASE + 11))-$((PORT_BASE + 10 + HOSTS_N)), $VS_REV to $((PORT_BASE + 1))-$((PORT_BASE + HOSTS_N)), $VS_REV started first"
			stop_clusters
			SWAPPED=1
			start_clusters
		fi
		order=(here vs)
		((p % 2 == 0)) && order=(vs here)
		for side in "${order[@]}"; do
			RUN_HOSTS=$HOST_LIST
			[[ "$side" == vs ]] && RUN_HOSTS=$VS_LIST
			info "pair $p of $PAIRS: $([[ "$side" == vs ]] && echo "$VS_REV" || echo "this tree")"
			nfailed=${#FAILED[@]}
			bench "vs-$side-$p" "${VS_RUN[@]}" >"$WORK/vs-$side-$p.txt" 2>&1
			if ((${#FAILED[@]} > nfailed)); then
				grep -v "^$VS_SCENARIO " "$WORK/vs-$side-$p.txt" | tail -n 30 >&2 # why it failed
			else
				grep -E '^(latency write -> receiver|CPU of every)' "$WORK/vs-$side-$p.txt" >&2 || true
			fi
			if [[ "$side" == vs ]]; then VS_B+=("$WORK/vs-$side-$p.json"); else VS_A+=("$WORK/vs-$side-$p.json"); fi
		done
	done
	RUNS=() # compared below, not summarized as a matrix
	if ((${#FAILED[@]} == 0)); then
		printf '\n## This tree (%s and changes) against %s, %d %s pairs at %s msg/s\n\n' \
			"$(git rev-parse --short HEAD)" "$VS_NAME" "$PAIRS" "$VS_SCENARIO" "$VS_RATE"
		"$BENCH" compare --names "this tree,$VS_REV" "$(IFS=,; echo "${VS_A[*]}")" "$(IFS=,; echo "${VS_B[*]}")"
	fi
	;;
*-smoke)
	bench oneone oneone --rate 200 --duration 3s --grace 5s
	;;
relay-*)
	# The relay has no catch-up, reconnects or memory target of its own to compare.
	bench oneone oneone --rate 1000 --duration 10s "${FLOOR[@]}"
	if [[ "$MODE" == full ]]; then
		bench ramp ramp --rates 500,1000,1500,2000,2500,3000,3500,4000,4500,5000,6000,7500,10000 --step 5s
	fi
	bench fanout fanout --members 100 --rate 1000 --duration 10s
	if [[ "$MODE" == full ]]; then
		bench fanout-1100 fanout --members 100 --rate 1100 --duration 10s
	fi
	;;
*-quick)
	bench oneone oneone --rate 1000 --duration 10s "${FLOOR[@]}"
	bench fanout fanout --members 100 --rate 500 --duration 3s
	bench catchup catchup --backlog 2000
	restart_hosts
	bench idle idle --conns 2000 --settle 3s
	bench storm storm --conns 300 --duration 10s --kill-after 3s --kill-pid "${PIDS[HOSTS_N - 1]}"
	;;
*-full)
	bench oneone oneone --rate 1000 --duration 10s "${FLOOR[@]}"
	bench ramp ramp --rates 500,1000,1500,2000,2500,3000,3500,4000,4500,5000,6000,7500,10000 --step 5s
	# 100 members get 99 deliveries a message: 1,000 msg/s tops out at 99,000/s, so the
	# >= 100,000/s target needs a second run past it (1,100 msg/s = 108,900/s).
	bench fanout fanout --members 100 --rate 1000 --duration 10s
	bench fanout-1100 fanout --members 100 --rate 1100 --duration 10s
	bench catchup catchup --backlog 10000
	restart_hosts
	bench idle idle --conns 10000
	# Last: it kills host 3 (restarted afterwards so the cluster stays whole).
	bench storm storm --conns 3000 --duration 20s --kill-after 5s --kill-pid "${PIDS[HOSTS_N - 1]}"
	start_host "$HOSTS_N"
	;;
esac

if ((${#RUNS[@]} > 0)) && [[ "$MODE" != smoke ]]; then
	stamp="$(date +%F)-$(hostname -s 2>/dev/null || hostname)"
	[[ "$MODE" == quick ]] && stamp="$stamp-quick"
	[[ "$SERVER" == relay ]] && stamp="$stamp-relay"
	"$BENCH" summarize --note "Mode: $MODE; server $SERVER; commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown); hosts GOMAXPROCS=${HOST_PROCS:-default}." \
		--out "$OUT_DIR/$stamp.json" --md "$OUT_DIR/$stamp.md" "${RUNS[@]}"
	info "results: $OUT_DIR/$stamp.json and $OUT_DIR/$stamp.md"
	# The charts README.md and docs/bench show; a quick run (no ramp) draws its own
	# elsewhere so it never replaces those of a full one.
	charts="$OUT_DIR/charts"
	[[ "$MODE" == quick ]] && charts="$OUT_DIR/charts-quick"
	[[ "$SERVER" == relay ]] && charts="$OUT_DIR/charts-relay"
	if "$BENCH" chart --out "$charts" "$OUT_DIR/$stamp.json"; then
		info "charts: $charts"
	else
		info "WARNING: no charts drawn (see above)"
	fi
fi

if ((${#FAILED[@]} > 0)); then
	die "failed runs: ${FAILED[*]} (see the output above)"
fi
info "all runs passed verification"
