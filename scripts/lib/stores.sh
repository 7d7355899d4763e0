# shellcheck shell=bash
# scripts/lib/stores.sh: PostgreSQL and Redis for Switchboard's scripts, and the small
# helpers they need. Sourced (never run) by:
#
#   scripts/test.sh     throw-away instances in a temp dir, removed when the tests end
#   scripts/cluster.sh  instances kept running under ./.cluster until `cluster.sh stop`
#
# Sourcing it only defines functions and the state variables below; nothing runs.
#
#   info/warn/die MSG          output; die exits 1 (callers' EXIT traps still run)
#   have CMD, is_root, can_apt, is_ci
#   apt_install PKG...         apt-get install, root on Debian only (else returns 1)
#   redact URL                 the URL with its password hidden, for printing
#   tcp_open HOST PORT         does something accept TCP connections there?
#   free_port                  an unused TCP port on 127.0.0.1 (20000-31999)
#   parse_url URL DEFAULT_PORT sets URL_USER URL_PASS URL_HOST URL_PORT
#
#   pg_answers URL             PostgreSQL usable by the tests (role may CREATE DATABASE)
#   pg_bin NAME                a PostgreSQL binary: PATH or /usr/lib/postgresql/*/bin
#   as_db_user CMD...          run CMD as the database's OS user (root may not run it)
#   start_private_pg DIR [LOG [PORT [OPTIONS]]]    initdb (unless DIR/data exists) + start
#   stop_private_pg [MODE]     pg_ctl stop of the instance started above
#   redis_answers URL          PING -> PONG
#   start_private_redis DIR [LOG [PORT [ARGS...]]] redis-server --daemonize
#   stop_private_redis         SIGTERM (then SIGKILL) the instance started above
#
# Requires bash 4+ and `set -u`-clean callers.

# ---- output and environment ------------------------------------------------------------

info() { printf '    %s\n' "$*"; }
warn() { printf '    WARNING: %s\n' "$*" >&2; }
die() { # die MSG [DETAIL...]: print and exit 1
	printf '\nFAIL: %s\n' "$1" >&2
	shift
	for line in "$@"; do printf '      %s\n' "$line" >&2; done
	exit 1
}
is_ci() { [[ "${CI:-}" =~ ^(true|TRUE|True|1|yes)$ ]]; }
is_root() { [[ "$(id -u)" -eq 0 ]]; }
have() { command -v "$1" >/dev/null 2>&1; }
can_apt() { is_root && have apt-get; }

# redact URL: hide a password in a URL before printing it.
redact() { sed -E 's#(://[^:/@]*):[^@]*@#\1:***@#' <<<"$1"; }

# apt_install PKG...: install Debian packages non-interactively (root only).
APT_UPDATED=""
apt_install() {
	can_apt || return 1
	info "installing with apt-get: $*"
	if [[ -z "$APT_UPDATED" ]]; then
		DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || return 1
		APT_UPDATED=1
	fi
	local log
	log=$(mktemp)
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >"$log" 2>&1; then
		cat "$log" >&2
		rm -f "$log"
		return 1
	fi
	rm -f "$log"
}

# tcp_open HOST PORT: does something accept TCP connections there (bash /dev/tcp)?
tcp_open() {
	# shellcheck disable=SC2016 # $1/$2 expand in the inner bash
	timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# free_port: a TCP port on 127.0.0.1 that nothing listens on, below Linux's ephemeral
# range (32768+) so an outgoing connection cannot take it in the meantime.
free_port() {
	local port
	for _ in $(seq 1 50); do
		port=$((20000 + RANDOM % 12000))
		if ! tcp_open 127.0.0.1 "$port"; then
			echo "$port"
			return 0
		fi
	done
	return 1
}

# ---- URL parsing -----------------------------------------------------------------------
# Sets URL_USER URL_PASS URL_HOST URL_PORT from scheme://[user[:pass]@]host[:port][/path][?query]
parse_url() {
	local url=$1 default_port=$2 rest auth hostport
	rest=${url#*://}
	rest=${rest%%\?*}
	URL_USER="" URL_PASS=""
	if [[ "$rest" == *@* ]]; then
		auth=${rest%@*}
		rest=${rest##*@}
		URL_USER=${auth%%:*}
		[[ "$auth" == *:* ]] && URL_PASS=${auth#*:}
	fi
	hostport=${rest%%/*}
	if [[ "$hostport" =~ ^\[(.*)\]:([0-9]+)$ ]]; then # [::1]:5432
		URL_HOST=${BASH_REMATCH[1]} URL_PORT=${BASH_REMATCH[2]}
	elif [[ "$hostport" =~ ^\[(.*)\]$ ]]; then
		URL_HOST=${BASH_REMATCH[1]} URL_PORT=$default_port
	elif [[ "$hostport" == *:* ]]; then
		URL_HOST=${hostport%%:*} URL_PORT=${hostport##*:}
	else
		URL_HOST=${hostport:-127.0.0.1} URL_PORT=$default_port
	fi
}

# ---- PostgreSQL ------------------------------------------------------------------------

# pg_answers URL: can tests use this server? With psql: connect, and the role may CREATE
# DATABASE. Without psql: pg_isready, else a bare TCP connect.
pg_answers() {
	local url=$1 can_create
	if have psql; then
		can_create=$(PGCONNECT_TIMEOUT=3 psql -X -w "$url" -Atqc \
			"select rolcreatedb or rolsuper from pg_roles where rolname = current_user" 2>/dev/null) || return 1
		if [[ "$can_create" != "t" ]]; then
			warn "$(redact "$url") answers, but its role may not CREATE DATABASE (the tests need that)"
			return 1
		fi
		return 0
	fi
	if have pg_isready; then
		pg_isready -q -t 3 -d "$url" >/dev/null 2>&1
		return
	fi
	parse_url "$url" 5432
	tcp_open "$URL_HOST" "$URL_PORT"
}

# pg_bin NAME: a PostgreSQL server binary from PATH or Debian's versioned directories
# (/usr/lib/postgresql/<version>/bin, newest first).
pg_bin() {
	local name=$1 dir
	if have "$name"; then
		readlink -f "$(command -v "$name")"
		return 0
	fi
	for dir in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r); do
		if [[ -x "$dir/$name" ]]; then
			echo "$dir/$name"
			return 0
		fi
	done
	return 1
}

# psql_bin: the psql client. On Debian /usr/bin/psql is a wrapper that dispatches on its
# own name, so it is used as found, never resolved like pg_bin's results.
psql_bin() {
	if have psql; then
		command -v psql
		return 0
	fi
	pg_bin psql
}

# as_db_user CMD...: PostgreSQL refuses to run as root; run its tools as an unprivileged
# user then (Debian's "postgres" user, or one we create).
DB_USER=""
as_db_user() {
	if ! is_root; then
		"$@"
	elif have runuser; then
		runuser -u "$DB_USER" -- "$@"
	else
		su "$DB_USER" -s /bin/sh -c "$(printf '%q ' "$@")"
	fi
}

# Settings for a throw-away cluster: no fsync (a crash of the machine may lose it, which
# is fine for tests and fast), room for many parallel test connections.
PG_THROWAWAY_OPTIONS="-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"

PG_DATA=""        # data dir of the private PostgreSQL, when we started one
PG_CTL=""         # its pg_ctl
PRIVATE_PG_URL="" # its URL (database "postgres", role "postgres", trust auth on 127.0.0.1)

# start_private_pg DIR [LOG [PORT [OPTIONS]]]: a private PostgreSQL with its data in
# DIR/data (initdb when DIR/data is not yet a cluster, so an existing one is reused), its
# Unix socket in DIR/sock, its log in LOG (default DIR/server.log), listening on
# 127.0.0.1:PORT (default, or when PORT is taken: a free port) with the server OPTIONS
# (default PG_THROWAWAY_OPTIONS). Sets PG_DATA, PG_CTL, DB_USER and PRIVATE_PG_URL.
start_private_pg() {
	local dir=$1 log=${2:-$1/server.log} want_port=${3:-} options=${4:-$PG_THROWAWAY_OPTIONS}
	local initdb port attempt sock
	initdb=$(pg_bin initdb) && PG_CTL=$(pg_bin pg_ctl) || return 1
	# pg_ctl starts the postgres binary next to it; prefer the pair from one directory.
	[[ -x "$(dirname "$initdb")/pg_ctl" ]] && PG_CTL="$(dirname "$initdb")/pg_ctl"

	if is_root; then
		if id postgres >/dev/null 2>&1; then
			DB_USER=postgres
		else
			DB_USER=switchboard-test
			id "$DB_USER" >/dev/null 2>&1 ||
				useradd --system --no-create-home --shell /usr/sbin/nologin "$DB_USER"
		fi
	fi

	PG_DATA="$dir/data"
	sock="$dir/sock"
	mkdir -p "$PG_DATA" "$sock" "$(dirname "$log")"
	touch "$log"
	chmod 700 "$PG_DATA"
	[[ -n "$DB_USER" ]] && chown -R "$DB_USER" "$dir" "$log"

	if [[ ! -f "$PG_DATA/PG_VERSION" ]]; then
		info "initdb ($(dirname "$initdb"))${DB_USER:+ as user $DB_USER}"
		# -N: no fsync during initdb; trust auth on 127.0.0.1 only; C locale works on
		# minimal images without generated locales.
		if ! as_db_user "$initdb" -D "$PG_DATA" -U postgres --auth=trust --encoding=UTF8 \
			--locale=C -N >"$dir/initdb.log" 2>&1; then
			cat "$dir/initdb.log" >&2
			return 1
		fi
	fi

	# A port can be taken between free_port and the bind: try a few.
	for attempt in 1 2 3; do
		if [[ "$attempt" == 1 && -n "$want_port" ]] && ! tcp_open 127.0.0.1 "$want_port"; then
			port=$want_port
		else
			port=$(free_port) || return 1
		fi
		# shellcheck disable=SC2086 # options is a word list by design
		if as_db_user "$PG_CTL" -D "$PG_DATA" -l "$log" -w -t 30 \
			-o "-p $port -k $sock -c listen_addresses=127.0.0.1 $options" \
			start >/dev/null 2>&1; then
			# shellcheck disable=SC2034 # read by the caller
			PRIVATE_PG_URL="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
			return 0
		fi
		warn "private PostgreSQL did not start on port $port (attempt $attempt); see below"
		tail -n 5 "$log" >&2 || true
	done
	return 1
}

# stop_private_pg [MODE]: stop the instance start_private_pg started (MODE: pg_ctl's
# smart, fast or immediate; default fast). A no-op when none runs.
stop_private_pg() {
	local mode=${1:-fast}
	[[ -n "$PG_DATA" && -f "$PG_DATA/postmaster.pid" ]] || return 0
	as_db_user "$PG_CTL" -D "$PG_DATA" -m "$mode" -w -t 20 stop >/dev/null 2>&1
}

# ---- Redis -----------------------------------------------------------------------------

# redis_answers URL: does PING get PONG? redis-cli when present, else raw RESP over
# bash /dev/tcp (with AUTH when the URL has a password).
redis_answers() {
	local url=$1 reply
	if have redis-cli; then
		reply=$(timeout 5 redis-cli --no-auth-warning -u "$url" ping 2>/dev/null) || return 1
		[[ "$reply" == PONG ]]
		return
	fi
	parse_url "$url" 6379
	# shellcheck disable=SC2016 # the inner script's $1..$4 expand in the inner bash
	reply=$(timeout 3 bash -c '
		exec 3<>"/dev/tcp/$1/$2" || exit 1
		if [[ -n "$4" ]]; then
			if [[ -n "$3" ]]; then printf "AUTH %s %s\r\n" "$3" "$4" >&3; else printf "AUTH %s\r\n" "$4" >&3; fi
			read -r line <&3
		fi
		printf "PING\r\n" >&3
		read -r line <&3
		printf "%s" "$line"' _ "$URL_HOST" "$URL_PORT" "$URL_USER" "$URL_PASS" 2>/dev/null) || return 1
	[[ "$reply" == +PONG* ]]
}

REDIS_PIDFILE=""     # pid file of the private Redis, when we started one
PRIVATE_REDIS_URL="" # its URL

# start_private_redis DIR [LOG [PORT [ARGS...]]]: redis-server daemonized on 127.0.0.1:PORT
# (default, or when PORT is taken: a free port), working dir DIR, log LOG (default
# DIR/redis.log), with the extra server ARGS (default: nothing on disk). Sets
# REDIS_PIDFILE and PRIVATE_REDIS_URL.
start_private_redis() {
	local dir=$1 log=${2:-$1/redis.log} want_port=${3:-}
	local server port attempt args=(--save '' --appendonly no)
	(($# > 3)) && args=("${@:4}")
	server=$(command -v redis-server) || return 1
	mkdir -p "$dir" "$(dirname "$log")"
	for attempt in 1 2 3; do
		if [[ "$attempt" == 1 && -n "$want_port" ]] && ! tcp_open 127.0.0.1 "$want_port"; then
			port=$want_port
		else
			port=$(free_port) || return 1
		fi
		REDIS_PIDFILE="$dir/redis-$port.pid"
		if "$server" --port "$port" --bind 127.0.0.1 "${args[@]}" \
			--daemonize yes --dir "$dir" --pidfile "$REDIS_PIDFILE" \
			--logfile "$log" >/dev/null 2>&1; then
			for _ in $(seq 1 50); do # up to 5 s
				if redis_answers "redis://127.0.0.1:$port/0"; then
					# shellcheck disable=SC2034 # read by the caller
					PRIVATE_REDIS_URL="redis://127.0.0.1:$port/0"
					return 0
				fi
				sleep 0.1
			done
		fi
		warn "private Redis did not start on port $port (attempt $attempt)"
		tail -n 5 "$log" >&2 2>/dev/null || true
		stop_private_redis
	done
	return 1
}

stop_private_redis() {
	local pid
	[[ -n "$REDIS_PIDFILE" && -f "$REDIS_PIDFILE" ]] || return 0
	pid=$(cat "$REDIS_PIDFILE")
	kill "$pid" 2>/dev/null || true
	for _ in $(seq 1 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -9 "$pid" 2>/dev/null || true
	rm -f "$REDIS_PIDFILE"
}
