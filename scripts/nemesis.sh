#!/usr/bin/env bash
# scripts/nemesis.sh: a randomized fault run in the manner of Jepsen (issue 7). A
# three-host cluster with proxies in front of Redis, PostgreSQL and each host's internal
# listener; clients that send, ack and reconnect; a nemesis that picks faults at seeded
# random times (kill -9 / SIGTERM a host and restart it, cut and restore the Redis,
# PostgreSQL or one internal link, restart Redis empty); a history of every send, answer
# and receipt; and a checker that verifies it. It runs TestNemesis in pkg/clustertest.
#
#   scripts/nemesis.sh                         a random seed (printed), 1 minute
#   scripts/nemesis.sh --seed 42 --minutes 2   replay seed 42 for 2 minutes
#   scripts/nemesis.sh --check FILE            check a history written by an earlier run
#
# Options:
#   --seed S       the seed of the fault schedule and of the clients' choices (0 or none:
#                  a random one, printed first so a failure can be replayed)
#   --minutes M    how long faults are injected (default 1); setup and the final
#                  settling add about 30 s
#   --out DIR      keep the history in DIR/nemesis-SEED.jsonl (default: a temp dir,
#                  removed when the run passes, kept and printed when it fails)
#   --race         build the test process with -race (slower; the hosts never are)
#
# Stores: TEST_DATABASE_URL and TEST_REDIS_URL as for scripts/test.sh (each run makes a
# database of its own; Redis is a private redis-server the run starts and restarts).
# Exit status: 0 the history passed the check, 1 it did not (or the run failed), 2 usage.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SEED=0
MINUTES=1
OUT=""
CHECK=""
RACE=()
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
while (($# > 0)); do
	case "$1" in
	--seed) SEED=${2:?--seed needs a value}; shift ;;
	--minutes) MINUTES=${2:?--minutes needs a value}; shift ;;
	--out) OUT=${2:?--out needs a directory}; shift ;;
	--check) CHECK=${2:?--check needs a file}; shift ;;
	--race) RACE=(-race) ;;
	-h | --help) usage; exit 0 ;;
	*) echo "nemesis.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done
[[ "$SEED" =~ ^[0-9]+$ ]] || { echo "nemesis.sh: --seed must be a number" >&2; exit 2; }
[[ "$MINUTES" =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "nemesis.sh: --minutes must be a number" >&2; exit 2; }

if [[ -n "$CHECK" ]]; then
	exec go test -count=1 -run '^TestNemesisCheckFile$' -v ./pkg/clustertest -args -nemesis.check="$(realpath "$CHECK")"
fi

if ((SEED == 0)); then
	# Picked here, not in the test, so it is printed before anything can fail.
	SEED=$(( (RANDOM << 15 | RANDOM) % 1000000000 + 1 ))
fi
echo "nemesis: seed=$SEED minutes=$MINUTES  (replay: scripts/nemesis.sh --seed $SEED --minutes $MINUTES)"

KEEP=1
if [[ -z "$OUT" ]]; then
	OUT=$(mktemp -d "${TMPDIR:-/tmp}/switchboard-nemesis.XXXXXX")
	KEEP=0
fi
mkdir -p "$OUT"
HISTORY="$(cd "$OUT" && pwd)/nemesis-$SEED.jsonl"

# The test's own timeout: the faults, plus setup and settling, plus room.
TIMEOUT=$(awk -v m="$MINUTES" 'BEGIN { printf "%ds", m * 60 + 300 }')
rc=0
# pipefail: the pipeline fails when go test does (grep always prints something).
go test "${RACE[@]}" -count=1 -timeout "$TIMEOUT" -run '^TestNemesis$' -v ./pkg/clustertest \
	-args -nemesis.seed="$SEED" -nemesis.minutes="$MINUTES" -nemesis.history="$HISTORY" \
	2>&1 | grep --line-buffered -v '^=== ' || rc=1
if ((rc != 0)); then
	echo "nemesis: FAILED with seed=$SEED; history kept in $HISTORY" >&2
	echo "nemesis: replay: scripts/nemesis.sh --seed $SEED --minutes $MINUTES" >&2
	exit 1
fi
if ((KEEP == 0)); then
	rm -rf "$OUT"
else
	echo "nemesis: history in $HISTORY"
fi
echo "nemesis: seed=$SEED passed"
