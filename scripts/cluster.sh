#!/usr/bin/env bash
# scripts/cluster.sh: a real Switchboard cluster on this machine, without Docker. The
# same topology as docker-compose.yml, service for service: postgres, redis, chatd1..N
# (`chatd serve`), haproxy round-robin in front with no sticky sessions.
#
#   scripts/cluster.sh [start] [N]   build chatd and chatctl, start N hosts (default 3)
#                                    and HAProxy on :8080; wait until all are ready
#   scripts/cluster.sh stop          end exactly what `start` started (by pid file)
#   scripts/cluster.sh status        what runs, with each host's /readyz
#
# Stores: CHAT_DATABASE_URL / CHAT_REDIS_URL when given and reachable (the database is
# created if missing); otherwise PRIVATE PostgreSQL and Redis started from the installed
# binaries (as scripts/test.sh does, see scripts/lib/stores.sh), with their data kept
# under .cluster/ so users, threads and messages survive stop/start. Missing Debian
# packages (postgresql, redis-server, haproxy) are installed with apt-get when root.
#
# Layout (under CLUSTER_DIR, default ./.cluster, git-ignored):
#   bin/chatd bin/chatctl   built from this checkout on every start
#   logs/<name>.log         postgres, redis, chatd1..N, haproxy (previous run: .log.prev)
#   run/<name>.pid          what is running; run/cluster.env: ports and store URLs
#   pg/ redis/              data of the private stores
#   secret                  the generated cluster secret (mode 600), kept across runs
#   env                     `source .cluster/env` points chatctl at this cluster
#   haproxy.cfg             generated from configs/haproxy.cfg when N != 3 or PORT_BASE != 8080
#
# Ports: HAProxy on PORT_BASE (8080); host i public on 127.0.0.1:PORT_BASE+i (8081..),
# internal on 127.0.0.1:PORT_BASE+1000+i (9081..).
#
# Environment:
#   PORT_BASE=8080          see Ports
#   CHATD_EXTRA_ENV="A=1 B=2"  more settings for every host, e.g. for chatbench:
#                           CHATD_EXTRA_ENV="CHAT_BCRYPT_COST=4 CHAT_LIMIT_AUTH_PER_MINUTE=100000"
#                           (other CHAT_* variables of the calling shell reach the hosts too)
#   CHAT_DATABASE_URL, CHAT_REDIS_URL, CHAT_REDIS_PREFIX   use these stores
#   CLUSTER_DIR=./.cluster  state dir (scripts/test.sh runs a second cluster in a temp dir)
#   NO_HAPROXY=1            hosts only, no HAProxy (scripts/test.sh's chatbench smoke run)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CALLER_PWD=$PWD
CLUSTER_DIR="${CLUSTER_DIR:-$ROOT/.cluster}"
[[ "$CLUSTER_DIR" == /* ]] || CLUSTER_DIR="$PWD/$CLUSTER_DIR" # absolute: used in env files
cd "$ROOT"
# shellcheck source-path=SCRIPTDIR source=lib/stores.sh
source "$ROOT/scripts/lib/stores.sh"

BIN_DIR="$CLUSTER_DIR/bin"
LOG_DIR="$CLUSTER_DIR/logs"
RUN_DIR="$CLUSTER_DIR/run"
STATE_FILE="$RUN_DIR/cluster.env"

PORT_BASE="${PORT_BASE:-8080}"
NO_HAPROXY="${NO_HAPROXY:-0}"
DATABASE_NAME=switchboard # of the private PostgreSQL, as in docker-compose.yml
STOP_TIMEOUT=20           # seconds between SIGTERM and SIGKILL (chatd drains within 15 s)
READY_TIMEOUT=90          # seconds for a host to answer /readyz 200 (store retries: 30 s)

usage() {
	sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
}

# short PATH: ./PATH when PATH is inside the checkout and the caller runs from its root
# (the usual case), else PATH unchanged: output the caller can paste as is.
short() {
	local p=$1
	[[ "$CALLER_PWD" == "$ROOT" && "$p" == "$ROOT/"* ]] && p=".${p#"$ROOT"}"
	echo "$p"
}

# ---- processes -------------------------------------------------------------------------

# The command name each component runs as (/proc/PID/comm), so a recycled pid of
# something else is never signalled.
expected_comm() {
	case "$1" in
	chatd*) echo chatd ;;
	haproxy) echo haproxy ;;
	redis) echo redis-server ;;
	postgres) echo postgres ;;
	*) return 1 ;;
	esac
}

# alive PID: the process exists and is not a zombie (exited, not yet reaped).
alive() {
	local state
	state=$(sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' "/proc/$1/status" 2>/dev/null) || return 1
	[[ -n "$state" && "$state" != Z && "$state" != X ]]
}

# pid_of NAME: the pid in run/NAME.pid when that process is alive and is NAME's program.
pid_of() {
	local name=$1 pid comm
	[[ -f "$RUN_DIR/$name.pid" ]] || return 1
	pid=$(<"$RUN_DIR/$name.pid")
	[[ "$pid" =~ ^[0-9]+$ ]] && alive "$pid" || return 1
	comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
	# setsid/env: a process this script launched a moment ago, not yet exec'd into NAME.
	[[ "$comm" == "$(expected_comm "$name")"* || "$comm" == setsid || "$comm" == env ]] || return 1
	echo "$pid"
}

# stop_names SIGNAL NAME...: send SIGNAL to each NAME's process, wait up to STOP_TIMEOUT
# for all of them to exit, SIGKILL what is left, remove their pid files.
stop_names() {
	local sig=$1 name pid waited=0
	shift
	local -A pids=()
	for name in "$@"; do
		if pid=$(pid_of "$name"); then
			info "stopping $name (pid $pid, SIG$sig)"
			kill -s "$sig" "$pid" 2>/dev/null || true
			pids[$name]=$pid
		fi
	done
	while ((${#pids[@]} > 0 && waited < STOP_TIMEOUT * 10)); do
		for name in "${!pids[@]}"; do
			alive "${pids[$name]}" || unset "pids[$name]"
		done
		((${#pids[@]} > 0)) || break
		sleep 0.1
		waited=$((waited + 1))
	done
	for name in "${!pids[@]}"; do
		warn "$name (pid ${pids[$name]}) did not exit within ${STOP_TIMEOUT}s: SIGKILL"
		kill -s KILL "${pids[$name]}" 2>/dev/null || true
	done
	for name in "$@"; do rm -f "$RUN_DIR/$name.pid"; done
}

# running_names: the components with a live process, in start order.
running_names() {
	local f name
	for f in "$RUN_DIR"/postgres.pid "$RUN_DIR"/redis.pid "$RUN_DIR"/chatd*.pid "$RUN_DIR"/haproxy.pid; do
		[[ -f "$f" ]] || continue
		name=$(basename "$f" .pid)
		pid_of "$name" >/dev/null && echo "$name"
	done
	return 0
}

# http_status URL: the HTTP status code of a GET (000 when nothing answers).
http_status() {
	if have curl; then
		curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$1" 2>/dev/null || true
		return 0
	fi
	local rest=${1#http://} hostport path line
	hostport=${rest%%/*} path=/${rest#*/}
	# shellcheck disable=SC2016 # expands in the inner bash
	line=$(timeout 3 bash -c 'exec 3<>"/dev/tcp/${1%:*}/${1##*:}" &&
		printf "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n" "$2" "$1" >&3 && head -n 1 <&3' _ "$hostport" "$path" 2>/dev/null) || true
	[[ "$line" =~ ^HTTP/[0-9.]+\ ([0-9]{3}) ]] && echo "${BASH_REMATCH[1]}" || echo 000
}

# rotate_log NAME: keep the previous run's log as NAME.log.prev; start an empty one.
rotate_log() {
	local log="$LOG_DIR/$1.log"
	[[ -s "$log" ]] && mv -f "$log" "$log.prev"
	: >"$log"
}

# ---- stores ----------------------------------------------------------------------------

# url_with_db URL DB: URL with its database path replaced by DB (query kept).
url_with_db() {
	local url=$1 db=$2 base query=""
	[[ "$url" == *\?* ]] && query="?${url#*\?}"
	base=${url%%\?*}
	local scheme=${base%%://*} rest=${base#*://}
	echo "$scheme://${rest%%/*}/$db$query"
}
# url_db URL: the database named in URL's path (empty when none).
url_db() {
	local rest=${1#*://}
	rest=${rest%%\?*}
	[[ "$rest" == */* ]] && echo "${rest#*/}"
	return 0
}

# use_given_pg URL: is the PostgreSQL at URL usable? Creates URL's database (through the
# server's "postgres" database) when only that is missing.
use_given_pg() {
	local url=$1 psql db exists
	if ! psql=$(psql_bin); then
		# No client to check or create with: a TCP answer has to do.
		parse_url "$url" 5432
		tcp_open "$URL_HOST" "$URL_PORT"
		return
	fi
	PGCONNECT_TIMEOUT=3 "$psql" -X -w "$url" -Atqc 'select 1' >/dev/null 2>&1 && return 0
	db=$(url_db "$url")
	[[ -n "$db" ]] || return 1
	exists=$(PGCONNECT_TIMEOUT=3 "$psql" -X -w "$(url_with_db "$url" postgres)" -Atqc \
		"select count(*) from pg_database where datname = '${db//\'/\'\'}'" 2>/dev/null) || return 1
	if [[ "$exists" == 0 ]]; then
		info "PostgreSQL: creating database $db"
		"$psql" -X -w "$(url_with_db "$url" postgres)" -qc "CREATE DATABASE \"${db//\"/\"\"}\"" >/dev/null ||
			die "could not create database $db on $(redact "$url")"
		return 0
	fi
	return 1 # the database exists, yet connecting to it failed
}

# ensure_postgres: sets DATABASE_URL and PG_PRIVATE (1 when we run the server).
ensure_postgres() {
	PG_PRIVATE=0
	if [[ -n "${CHAT_DATABASE_URL:-}" ]]; then
		if use_given_pg "$CHAT_DATABASE_URL"; then
			DATABASE_URL=$CHAT_DATABASE_URL
			info "PostgreSQL: using $(redact "$DATABASE_URL") (CHAT_DATABASE_URL)"
			return 0
		fi
		warn "CHAT_DATABASE_URL=$(redact "$CHAT_DATABASE_URL") does not answer: starting a private PostgreSQL instead"
	fi
	if ! pg_bin initdb >/dev/null || ! pg_bin pg_ctl >/dev/null; then
		apt_install postgresql || true
	fi
	if ! pg_bin initdb >/dev/null || ! pg_bin pg_ctl >/dev/null; then
		die "PostgreSQL (initdb, pg_ctl) is not installed." \
			"sudo apt-get update && sudo apt-get install -y postgresql" \
			"or set CHAT_DATABASE_URL to a running server"
	fi
	local psql want_port=""
	psql=$(psql_bin) || die "psql is not installed (sudo apt-get install -y postgresql-client)"
	[[ -f "$CLUSTER_DIR/pg/port" ]] && want_port=$(<"$CLUSTER_DIR/pg/port")
	rotate_log postgres
	# Durable settings (unlike the tests' throw-away ones): fsync stays on.
	start_private_pg "$CLUSTER_DIR/pg" "$LOG_DIR/postgres.log" "$want_port" "-c max_connections=300" ||
		die "the private PostgreSQL did not start" "see $(short "$LOG_DIR/postgres.log")"
	head -n 1 "$PG_DATA/postmaster.pid" >"$RUN_DIR/postgres.pid"
	PG_PRIVATE=1
	parse_url "$PRIVATE_PG_URL" 5432
	echo "$URL_PORT" >"$CLUSTER_DIR/pg/port"
	local exists
	exists=$("$psql" -X -w "$PRIVATE_PG_URL" -Atqc "select count(*) from pg_database where datname = '$DATABASE_NAME'") ||
		die "cannot query the private PostgreSQL at $PRIVATE_PG_URL (see above)"
	if [[ "$exists" == 0 ]]; then
		"$psql" -X -w "$PRIVATE_PG_URL" -qc "CREATE DATABASE $DATABASE_NAME" >/dev/null ||
			die "could not create database $DATABASE_NAME"
	fi
	DATABASE_URL=$(url_with_db "$PRIVATE_PG_URL" "$DATABASE_NAME")
	info "PostgreSQL: private, $DATABASE_URL (data in $(short "$CLUSTER_DIR/pg"))"
}

# ensure_redis: sets REDIS_URL and REDIS_PRIVATE (1 when we run the server).
ensure_redis() {
	REDIS_PRIVATE=0
	if [[ -n "${CHAT_REDIS_URL:-}" ]]; then
		if redis_answers "$CHAT_REDIS_URL"; then
			REDIS_URL=$CHAT_REDIS_URL
			info "Redis:      using $(redact "$REDIS_URL") (CHAT_REDIS_URL)"
			return 0
		fi
		warn "CHAT_REDIS_URL=$(redact "$CHAT_REDIS_URL") does not answer: starting a private Redis instead"
	fi
	have redis-server || apt_install redis-server || true
	have redis-server ||
		die "Redis (redis-server) is not installed." \
			"sudo apt-get update && sudo apt-get install -y redis-server" \
			"or set CHAT_REDIS_URL to a running Redis"
	local want_port=""
	[[ -f "$CLUSTER_DIR/redis/port" ]] && want_port=$(<"$CLUSTER_DIR/redis/port")
	rotate_log redis
	# An append-only file, as in docker-compose.yml: sessions and presence survive a restart.
	start_private_redis "$CLUSTER_DIR/redis" "$LOG_DIR/redis.log" "$want_port" --appendonly yes ||
		die "the private Redis did not start" "see $(short "$LOG_DIR/redis.log")"
	cp "$REDIS_PIDFILE" "$RUN_DIR/redis.pid"
	REDIS_PRIVATE=1
	REDIS_URL=$PRIVATE_REDIS_URL
	parse_url "$REDIS_URL" 6379
	echo "$URL_PORT" >"$CLUSTER_DIR/redis/port"
	info "Redis:      private, $REDIS_URL (data in $(short "$CLUSTER_DIR/redis"))"
}

# ---- start -----------------------------------------------------------------------------

STARTING=0
on_exit() {
	local rc=$?
	if ((rc != 0 && STARTING)); then
		warn "start failed: stopping what it started"
		STARTING=0
		do_stop >&2 || true
	fi
	exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# haproxy_config: configs/haproxy.cfg itself for the docker-compose shape (3 hosts on
# :8080); otherwise a copy with the bind port and N server lines, in CLUSTER_DIR.
haproxy_config() {
	local n=$1 out="$CLUSTER_DIR/haproxy.cfg"
	if ((n == 3 && PORT_BASE == 8080)); then
		echo "$ROOT/configs/haproxy.cfg"
		return 0
	fi
	{
		echo "# GENERATED by scripts/cluster.sh from configs/haproxy.cfg ($n servers, bind :$PORT_BASE); edit that file instead."
		awk -v n="$n" -v port="$PORT_BASE" '
			/^[[:space:]]*bind[[:space:]]+:8080([[:space:]]|$)/ { sub(/:8080/, ":" port) }
			/^[[:space:]]*server[[:space:]]+chatd[0-9]+[[:space:]]/ {
				if (!done) {
					indent = $0; sub(/[^[:space:]].*$/, "", indent)
					for (i = 1; i <= n; i++)
						printf "%sserver chatd%d \"${CHATD%d_ADDR-chatd%d:8080}\"\n", indent, i, i, i
					done = 1
				}
				next
			}
			{ print }' "$ROOT/configs/haproxy.cfg"
	} >"$out"
	[[ $(grep -cE '^[[:space:]]*server[[:space:]]+chatd' "$out") == "$n" ]] ||
		die "could not generate $out from configs/haproxy.cfg (its server lines changed?)"
	echo "$out"
}

do_start() {
	local n=$1 i name pid port
	[[ "$n" =~ ^[1-9][0-9]?$ ]] || die "N must be a number of hosts from 1 to 99, not '$n'"
	if ! [[ "$PORT_BASE" =~ ^[0-9]+$ ]] || ((PORT_BASE < 1024 || PORT_BASE + 1000 + n > 65535)); then
		die "PORT_BASE must be a port from 1024 to $((64535 - n)) (got '$PORT_BASE')"
	fi
	local extra=()
	read -r -a extra <<<"${CHATD_EXTRA_ENV:-}"
	for i in "${extra[@]}"; do
		[[ "$i" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "CHATD_EXTRA_ENV must be NAME=value words, not '$i'"
	done

	mkdir -p "$CLUSTER_DIR" "$BIN_DIR" "$LOG_DIR" "$RUN_DIR"
	# As root the private PostgreSQL runs as user postgres, who must reach pg/ and logs/.
	is_root && chmod 755 "$CLUSTER_DIR" "$LOG_DIR"
	local running
	running=$(running_names | tr '\n' ' ')
	[[ -z "$running" ]] ||
		die "a cluster from $(short "$CLUSTER_DIR") is already running: ${running% }" \
			"scripts/cluster.sh status   shows it;   scripts/cluster.sh stop   ends it"
	rm -f "$RUN_DIR"/*.pid # stale: their processes are gone

	# Every port first, so a busy one fails before anything starts.
	local ports=()
	((NO_HAPROXY == 1)) || ports+=("$PORT_BASE")
	for ((i = 1; i <= n; i++)); do ports+=($((PORT_BASE + i)) $((PORT_BASE + 1000 + i))); done
	for port in "${ports[@]}"; do
		if tcp_open 127.0.0.1 "$port"; then
			die "port $port is already in use (try PORT_BASE=...; ss -ltnp shows who holds it)" \
				"$(ss -ltnp "sport = :$port" 2>/dev/null | tail -n +2 | head -n 1)"
		fi
	done

	# -- tools and binaries --
	if ! have go && [[ -x /usr/local/go/bin/go ]]; then export PATH="/usr/local/go/bin:$PATH"; fi
	have go || die "Go is not installed; scripts/test.sh prints the command to install it."
	if ((NO_HAPROXY != 1)); then
		have haproxy || apt_install haproxy || true
		have haproxy || die "HAProxy is not installed." "sudo apt-get update && sudo apt-get install -y haproxy"
	fi
	info "building chatd and chatctl into $(short "$BIN_DIR")"
	go build -o "$BIN_DIR/chatd" ./cmd/chatd || die "go build ./cmd/chatd failed"
	go build -o "$BIN_DIR/chatctl" ./cmd/chatctl || die "go build ./cmd/chatctl failed"

	# The cluster secret: generated once, kept (hosts of later runs accept each other).
	if [[ ! -s "$CLUSTER_DIR/secret" ]]; then
		(
			umask 077
			if have openssl; then openssl rand -hex 32; else od -An -tx1 -N32 /dev/urandom | tr -d ' \n'; fi >"$CLUSTER_DIR/secret"
		)
	fi
	chmod 600 "$CLUSTER_DIR/secret"
	local secret
	secret=$(tr -d '\n' <"$CLUSTER_DIR/secret")
	((${#secret} >= 32)) || die "$(short "$CLUSTER_DIR/secret") holds fewer than 32 bytes"

	# From here on a failure stops whatever was started (on_exit).
	STARTING=1

	# -- stores --
	ensure_postgres
	ensure_redis
	{
		printf 'N=%q\nPORT_BASE=%q\nNO_HAPROXY=%q\n' "$n" "$PORT_BASE" "$NO_HAPROXY"
		printf 'DATABASE_URL=%q\nPG_PRIVATE=%q\n' "$DATABASE_URL" "$PG_PRIVATE"
		printf 'REDIS_URL=%q\nREDIS_PRIVATE=%q\nREDIS_PREFIX=%q\n' "$REDIS_URL" "$REDIS_PRIVATE" "${CHAT_REDIS_PREFIX:-}"
		printf 'STARTED=%q\n' "$(date '+%Y-%m-%d %H:%M:%S')"
	} >"$STATE_FILE"
	chmod 600 "$STATE_FILE" # URLs may hold passwords

	# -- chatd1..N --
	local origins="http://localhost:$PORT_BASE,http://127.0.0.1:$PORT_BASE"
	for ((i = 1; i <= n; i++)); do
		name=chatd$i
		rotate_log "$name"
		# Explicit settings first, CHATD_EXTRA_ENV last so it can override them. setsid:
		# the host belongs to no terminal, so closing the shell that started it does not
		# end it; only `stop` does.
		setsid env \
			CHAT_HOST_ID="$name" \
			CHAT_PUBLIC_ADDR="127.0.0.1:$((PORT_BASE + i))" \
			CHAT_INTERNAL_ADDR="127.0.0.1:$((PORT_BASE + 1000 + i))" \
			CHAT_INTERNAL_URL="http://127.0.0.1:$((PORT_BASE + 1000 + i))" \
			CHAT_DATABASE_URL="$DATABASE_URL" \
			CHAT_REDIS_URL="$REDIS_URL" \
			CHAT_CLUSTER_SECRET="$secret" \
			CHAT_TRUSTED_PROXIES=127.0.0.1/32 \
			CHAT_ALLOWED_ORIGINS="$origins" \
			CHAT_AUTO_MIGRATE=true \
			CHAT_LOG_FORMAT=text \
			"${extra[@]}" \
			"$BIN_DIR/chatd" serve </dev/null >>"$LOG_DIR/$name.log" 2>&1 &
		echo $! >"$RUN_DIR/$name.pid"
	done
	info "started chatd1..$n (public 127.0.0.1:$((PORT_BASE + 1))-$((PORT_BASE + n)), internal 127.0.0.1:$((PORT_BASE + 1001))-$((PORT_BASE + 1000 + n))); waiting for /readyz"
	local deadline=$((SECONDS + READY_TIMEOUT)) pending
	while :; do
		pending=()
		for ((i = 1; i <= n; i++)); do
			name=chatd$i
			if ! pid_of "$name" >/dev/null; then
				tail -n 20 "$LOG_DIR/$name.log" >&2
				die "$name exited during start-up (its log is above: $(short "$LOG_DIR/$name.log"))"
			fi
			[[ "$(http_status "http://127.0.0.1:$((PORT_BASE + i))/readyz")" == 200 ]] || pending+=("$name")
		done
		((${#pending[@]} == 0)) && break
		if ((SECONDS >= deadline)); then
			for name in "${pending[@]}"; do tail -n 10 "$LOG_DIR/$name.log" >&2; done
			die "not ready after ${READY_TIMEOUT}s: ${pending[*]} (logs in $(short "$LOG_DIR"))"
		fi
		sleep 0.5
	done
	info "all $n hosts answer /readyz 200"

	# -- HAProxy --
	if ((NO_HAPROXY != 1)); then
		local cfg haproxy_env=()
		cfg=$(haproxy_config "$n")
		for ((i = 1; i <= n; i++)); do haproxy_env+=("CHATD${i}_ADDR=127.0.0.1:$((PORT_BASE + i))"); done
		env "${haproxy_env[@]}" haproxy -c -q -f "$cfg" || die "haproxy -c rejects $(short "$cfg")"
		rotate_log haproxy
		# -db: stay in the foreground (so the pid is HAProxy's) and log to stdout (the config
		# logs to stdout), which goes to logs/haproxy.log.
		setsid env "${haproxy_env[@]}" haproxy -db -f "$cfg" </dev/null >>"$LOG_DIR/haproxy.log" 2>&1 &
		echo $! >"$RUN_DIR/haproxy.pid"
		deadline=$((SECONDS + 20))
		until [[ "$(http_status "http://127.0.0.1:$PORT_BASE/readyz")" == 200 ]]; do
			if ! pid_of haproxy >/dev/null; then
				tail -n 20 "$LOG_DIR/haproxy.log" >&2
				die "haproxy exited during start-up (its log is above)"
			fi
			((SECONDS < deadline)) || die "HAProxy does not answer /readyz 200 on :$PORT_BASE after 20s"
			sleep 0.2
		done
		info "HAProxy: http://localhost:$PORT_BASE/readyz 200 ($(short "$cfg"))"
	fi
	STARTING=0

	write_env_file
	print_summary
}

# write_env_file: CLUSTER_DIR/env, to be sourced by a shell that runs chatctl.
write_env_file() {
	local file="$CLUSTER_DIR/env" shown
	shown=$(short "$CLUSTER_DIR")/env
	(
		umask 077
		{
			echo "# Generated by scripts/cluster.sh: chatctl's settings for this cluster."
			echo "#   source $shown && chatctl hosts"
			printf 'export CHAT_DATABASE_URL=%q\n' "$DATABASE_URL"
			printf 'export CHAT_REDIS_URL=%q\n' "$REDIS_URL"
			[[ -n "${CHAT_REDIS_PREFIX:-}" ]] && printf 'export CHAT_REDIS_PREFIX=%q\n' "$CHAT_REDIS_PREFIX"
			# shellcheck disable=SC2016 # expanded when the file is sourced
			printf 'export CHAT_CLUSTER_SECRET="$(cat %q)"\n' "$CLUSTER_DIR/secret"
			# shellcheck disable=SC2016
			printf 'export PATH=%q:"$PATH"\n' "$BIN_DIR"
		} >"$file"
	)
}

print_summary() {
	local i
	echo
	if ((NO_HAPROXY == 1)); then
		echo "Switchboard cluster is up: $N hosts (no HAProxy)"
	else
		echo "Switchboard cluster is up: http://localhost:$PORT_BASE  ($N hosts behind HAProxy, round-robin)"
	fi
	for ((i = 1; i <= N; i++)); do
		printf '  chatd%-3s http://127.0.0.1:%d   internal http://127.0.0.1:%d\n' "$i" $((PORT_BASE + i)) $((PORT_BASE + 1000 + i))
	done
	printf '  postgres  %s%s\n' "$(redact "$DATABASE_URL")" "$( ((PG_PRIVATE)) && echo "  (private, data in $(short "$CLUSTER_DIR/pg"))")"
	printf '  redis     %s%s\n' "$(redact "$REDIS_URL")" "$( ((REDIS_PRIVATE)) && echo "  (private, data in $(short "$CLUSTER_DIR/redis"))")"
	printf '  logs      %s/\n' "$(short "$LOG_DIR")"
	cat <<EOF

chatctl reads the same settings as the hosts; export them (this is what $(short "$CLUSTER_DIR/env") holds):
  export CHAT_DATABASE_URL='$(redact "$DATABASE_URL")'
  export CHAT_REDIS_URL='$(redact "$REDIS_URL")'
EOF
	[[ -n "${CHAT_REDIS_PREFIX:-}" ]] && echo "  export CHAT_REDIS_PREFIX='$CHAT_REDIS_PREFIX'"
	cat <<EOF
  export CHAT_CLUSTER_SECRET="\$(cat $CLUSTER_DIR/secret)"
  export PATH="$BIN_DIR:\$PATH"
or simply:  source $(short "$CLUSTER_DIR/env")
then:
  chatctl hosts                  live hosts and their heartbeats
  chatctl watch                  presence changes as they happen (Ctrl-C ends)
  chatctl presence alice         where alice is connected
  chatctl connections chatd1     the sockets chatd1 holds (signed internal call)

scripts/cluster.sh status   shows what runs;   scripts/cluster.sh stop   ends it all.
EOF
}

# ---- stop / status ---------------------------------------------------------------------

do_stop() {
	if [[ ! -d "$RUN_DIR" || -z "$(running_names)" ]]; then
		info "nothing is running from $(short "$CLUSTER_DIR")"
		rm -f "$RUN_DIR"/*.pid 2>/dev/null || true
		return 0
	fi
	local hosts=() f
	for f in "$RUN_DIR"/chatd*.pid; do [[ -f "$f" ]] && hosts+=("$(basename "$f" .pid)"); done
	# Front door first (no new traffic), then the hosts together (each drains its sockets
	# with 1012 and removes its presence, within 15 s), then the stores they used.
	stop_names TERM haproxy
	((${#hosts[@]} == 0)) || stop_names TERM "${hosts[@]}"
	stop_names TERM redis
	# SIGINT is PostgreSQL's "fast" shutdown (SIGTERM, "smart", would wait for clients).
	stop_names INT postgres
	info "stopped; data and logs kept in $(short "$CLUSTER_DIR") (rm -rf it to start from scratch)"
}

do_status() {
	local name pid line any=0 down=0 i
	if [[ ! -f "$STATE_FILE" ]]; then
		echo "no cluster has been started from $(short "$CLUSTER_DIR")"
		return 3
	fi
	# shellcheck source=/dev/null
	source "$STATE_FILE"
	echo "Switchboard cluster in $(short "$CLUSTER_DIR") (started $STARTED, $N hosts, PORT_BASE=$PORT_BASE)"
	local names=()
	((PG_PRIVATE)) && names+=(postgres)
	((REDIS_PRIVATE)) && names+=(redis)
	for ((i = 1; i <= N; i++)); do names+=("chatd$i"); done
	((NO_HAPROXY == 1)) || names+=(haproxy)
	((PG_PRIVATE)) || printf '  %-9s external   %s\n' postgres "$(redact "$DATABASE_URL")"
	((REDIS_PRIVATE)) || printf '  %-9s external   %s\n' redis "$(redact "$REDIS_URL")"
	for name in "${names[@]}"; do
		case "$name" in
		postgres) line=$(redact "$DATABASE_URL") ;;
		redis) line=$(redact "$REDIS_URL") ;;
		haproxy) line="http://localhost:$PORT_BASE  /readyz $(http_status "http://127.0.0.1:$PORT_BASE/readyz")" ;;
		chatd*)
			i=${name#chatd}
			line="http://127.0.0.1:$((PORT_BASE + i))  /readyz $(http_status "http://127.0.0.1:$((PORT_BASE + i))/readyz")"
			;;
		esac
		if pid=$(pid_of "$name"); then
			printf '  %-9s running    pid %-8s %s\n' "$name" "$pid" "$line"
			any=1
		else
			printf '  %-9s STOPPED\n' "$name"
			down=1
		fi
	done
	echo "  logs      $(short "$LOG_DIR")/"
	((any)) || return 3
	((down == 0))
}

# ---- main ------------------------------------------------------------------------------

cmd=${1:-start}
case "$cmd" in
start)
	(($# <= 2)) || die "usage: scripts/cluster.sh [start] [N]"
	N=${2:-3}
	do_start "$N"
	;;
[0-9]*)
	(($# == 1)) || die "usage: scripts/cluster.sh [start] [N]"
	N=$1
	do_start "$N"
	;;
stop) do_stop ;;
status) do_status ;;
-h | --help | help) usage ;;
*)
	usage >&2
	exit 2
	;;
esac
