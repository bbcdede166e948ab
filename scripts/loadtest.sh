#!/usr/bin/env bash
# End-to-end load test of gpt-load on loopback (make loadtest).
#
# Builds gpt-load from this tree, a mock OpenAI upstream (cmd/mockupstream)
# and a time-to-first-byte probe (cmd/ttfb), then runs every workload twice,
# once straight to the mock and once through gpt-load, and prints a Markdown
# table with both and their ratio. Load comes from wrk (Debian package);
# curl sends the large bodies. Everything listens on 127.0.0.1, every step is
# bounded in time, and every process started here is stopped on exit.
#
# Row 1R repeats workload 1 through a gpt-load restarted with REDIS_URL set,
# pointing at a redis-server (Debian package) this script starts on a free
# loopback port, without persistence, and stops at the end.
#
# SHORT=1 shrinks every duration (under a minute in all) and does not write
# docs/benchmarks.md. Nothing here asserts a time: the numbers are reported,
# not judged.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
SHORT=${SHORT:-0}
[[ $SHORT == 0 || $SHORT == "" ]] && SHORT=0 || SHORT=1

if [[ $SHORT == 1 ]]; then
	D1=3           # workload 1 and 2: wrk seconds
	TTFB_ROUNDS=2  # workload 3: measured rounds of 150
	SLOW_N=300     # workload 4: concurrent slow streams
	SLOW_CHUNKS=30 # … of SLOW_CHUNKS events SLOW_GAP ms apart
	BODY_CASES="1" # workload 5: concurrent 20 MiB bodies per case
else
	D1=10
	TTFB_ROUNDS=5
	SLOW_N=1000
	SLOW_CHUNKS=100
	BODY_CASES="1 4"
fi
SLOW_GAP=100
SLOW_SECS=$(((SLOW_CHUNKS * SLOW_GAP + 999) / 1000))
SLOW_WRK=$((SLOW_SECS + 2)) # long enough for each connection to finish one stream
TTFB_N=150
BODY_BYTES=$((20 * 1024 * 1024))
NKEYS=100

say() { printf '%s\n' "$*" >&2; }
die() {
	say "loadtest: $*"
	exit 1
}

# ---------------------------------------------------------------- tools
# need_pkg PACKAGE COMMAND…: installs the Debian package when one of the
# commands is missing.
need_pkg() {
	local pkg=$1 c missing=""
	shift
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || missing=$c
	done
	[[ -z $missing ]] && return 0
	say "$missing is not installed; installing the Debian package (apt-get install -y $pkg)"
	local sudo=()
	if [[ $(id -u) != 0 ]]; then
		if command -v sudo >/dev/null 2>&1; then
			sudo=(sudo)
		else
			die "$missing is missing and this is not root and there is no sudo: install it yourself (Debian/Ubuntu: apt-get install $pkg; macOS: brew install ${pkg%-server}) and run again"
		fi
	fi
	command -v apt-get >/dev/null 2>&1 ||
		die "$missing is missing and apt-get is not available: install $pkg with your package manager and run again"
	"${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y -qq "$pkg" >/dev/null ||
		die "apt-get install $pkg failed; install $pkg yourself and run again"
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || die "$c still not found after installing $pkg"
	done
}
for t in go curl timeout awk sha256sum; do
	command -v "$t" >/dev/null 2>&1 || die "$t is required"
done
need_pkg wrk wrk
need_pkg redis-server redis-server redis-cli

# ---------------------------------------------------------------- cleanup
TMP=$(mktemp -d "${TMPDIR:-/tmp}/gpt-load-loadtest.XXXXXX")
MOCK_PID="" PROXY_PID="" SAMPLER_PID="" REDIS_PID=""
MAIN_PID=$BASHPID
cleanup() {
	local rc=$? p live
	# A background subshell killed before it reset its traps must not clean up.
	[[ $BASHPID == "$MAIN_PID" ]] || exit "$rc"
	trap - EXIT INT TERM
	# Every background process of this script is one of its jobs: wrk,
	# curl, the sampler, the mock, gpt-load and redis-server.
	live=$(jobs -p)
	for p in $live $MOCK_PID $PROXY_PID $SAMPLER_PID $REDIS_PID; do
		kill -TERM "$p" 2>/dev/null || true
	done
	for _ in $(seq 50); do
		local any=0
		for p in $live $MOCK_PID $PROXY_PID $SAMPLER_PID $REDIS_PID; do
			kill -0 "$p" 2>/dev/null && any=1
		done
		[[ $any == 0 ]] && break
		sleep 0.1
	done
	for p in $live $MOCK_PID $PROXY_PID $SAMPLER_PID $REDIS_PID; do
		kill -KILL "$p" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	rm -rf "$TMP"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# run CMD…: runs a command in the background and waits for it, so that a
# signal reaches the trap at once instead of after the command.
run() {
	"$@" &
	wait $!
}

# Many connections need many descriptors; children inherit the limit.
NOFILE_NOTE=""
if ! ulimit -n 65536 2>/dev/null; then
	hard=$(ulimit -Hn)
	ulimit -n "$hard" 2>/dev/null || true
	NOFILE_NOTE="could not raise the open-file limit to 65536 (not permitted here); using the hard limit $(ulimit -n)"
	say "note: $NOFILE_NOTE"
fi

# ---------------------------------------------------------------- build
say "== building gpt-load (from this tree), mockupstream and ttfb into $TMP"
run go build -o "$TMP/gpt-load" ./cmd/gpt-load
run go build -o "$TMP/mockupstream" ./cmd/mockupstream
run go build -o "$TMP/ttfb" ./cmd/ttfb

# ---------------------------------------------------------------- inputs
for i in $(seq "$NKEYS"); do printf 'sk-loadtest-%04d-%s\n' "$i" "0123456789abcdefghijklmnopqrstuv"; done >"$TMP/keys.txt"
: >"$TMP/empty.env"
# A ~150-byte chat request body; the query string decides streaming.
CHAT_BODY='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Write one short sentence about load testing a proxy."}],"max_tokens":64,"stream":false}'
printf '%s' "$CHAT_BODY" >"$TMP/chat.json"
cat >"$TMP/post.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-loadtest-client"
wrk.body = [[$CHAT_BODY]]
EOF
head -c "$BODY_BYTES" /dev/urandom >"$TMP/body.bin"
BODY_SHA=$(sha256sum "$TMP/body.bin" | awk '{print $1}')

# ---------------------------------------------------------------- processes
CURL=(curl -s --noproxy '*' --max-time 10)

# free_port prints a port nothing listens on, below the ephemeral range.
free_port() {
	local p
	for _ in $(seq 100); do
		p=$((20000 + RANDOM % 12000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

# start_mock [addr]: starts the mock, sets MOCK_PID, MOCK_ADDR, MOCK_URL.
start_mock() {
	local addr=${1:-127.0.0.1:0}
	: >"$TMP/mock.out"
	"$TMP/mockupstream" -addr "$addr" >"$TMP/mock.out" 2>"$TMP/mock.err" &
	MOCK_PID=$!
	for _ in $(seq 100); do
		MOCK_ADDR=$(head -n 1 "$TMP/mock.out" 2>/dev/null || true)
		[[ -n $MOCK_ADDR ]] && break
		kill -0 "$MOCK_PID" 2>/dev/null || break
		sleep 0.05
	done
	[[ -n $MOCK_ADDR ]] || die "the mock upstream did not start: $(cat "$TMP/mock.err")"
	MOCK_URL="http://$MOCK_ADDR"
}

stop_pid() {
	local p=$1
	[[ -n $p ]] || return 0
	kill -TERM "$p" 2>/dev/null || return 0
	for _ in $(seq 100); do
		kill -0 "$p" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$p" 2>/dev/null || true
	wait "$p" 2>/dev/null || true
}

# start_redis: starts redis-server on a free loopback port, without
# persistence; sets REDIS_PID, REDIS_PORT and REDIS_URL.
start_redis() {
	local i
	for i in 1 2 3 4 5; do
		REDIS_PORT=$(free_port) || die "no free port found"
		(cd "$TMP" && exec redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
			--daemonize no) >"$TMP/redis.$i.log" 2>&1 &
		REDIS_PID=$!
		for _ in $(seq 100); do
			kill -0 "$REDIS_PID" 2>/dev/null || break
			if [[ $(timeout 2 redis-cli -p "$REDIS_PORT" ping 2>/dev/null || true) == PONG ]]; then
				REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
				return 0
			fi
			sleep 0.05
		done
		stop_pid "$REDIS_PID"
		say "redis-server did not answer on port $REDIS_PORT; its log:"
		tail -n 20 "$TMP/redis.$i.log" >&2 || true
	done
	die "redis-server would not start"
}
rcli() { timeout 5 redis-cli -p "$REDIS_PORT" "$@"; }

PROXY_RUN=0
# start_proxy true|false [REDIS_URL]: starts gpt-load (access log on or off)
# with only the environment given here (no .env, nothing inherited), waits
# for /health (and, given a REDIS_URL, for its "redis" to be "up").
start_proxy() {
	local access=$1 redis=${2:-} level=warn health
	# Access lines are written at info level: with the log on, say info.
	[[ $access == true ]] && level=info
	for _ in 1 2 3 4 5; do
		PROXY_RUN=$((PROXY_RUN + 1))
		PROXY_PORT=$(free_port) || die "no free port found"
		PROXY_LOG="$TMP/gpt-load.$PROXY_RUN.log"
		(cd "$TMP" && exec env -i PATH="$PATH" HOME="${HOME:-/}" \
			HOST=127.0.0.1 PORT="$PROXY_PORT" \
			OPENAI_BASE_URL="$MOCK_URL" KEYS_FILE="$TMP/keys.txt" \
			LOG_LEVEL="$level" LOG_ENABLE_REQUEST="$access" \
			MAX_CONCURRENT_REQUESTS=4096 ${redis:+REDIS_URL="$redis"} \
			"$TMP/gpt-load" -env-file "$TMP/empty.env") >"$PROXY_LOG" 2>&1 &
		PROXY_PID=$!
		PROXY_URL="http://127.0.0.1:$PROXY_PORT"
		for _ in $(seq 100); do
			kill -0 "$PROXY_PID" 2>/dev/null || break
			health=$("${CURL[@]}" -w '\n%{http_code}' "$PROXY_URL/health" || true)
			if [[ ${health##*$'\n'} == 200 ]] && { [[ -z $redis ]] || grep -Eq '"redis": *"up"' <<<"$health"; }; then
				return 0
			fi
			sleep 0.1
		done
		stop_pid "$PROXY_PID"
		say "gpt-load did not become healthy${redis:+ (with redis up)} on port $PROXY_PORT; its log:"
		tail -n 20 "$PROXY_LOG" >&2 || true
	done
	die "gpt-load would not start"
}

restart_proxy() {
	stop_pid "$PROXY_PID"
	start_proxy "${1:-false}" "${2:-}"
}

# ---------------------------------------------------------------- measuring
mock_reset() { "${CURL[@]}" -o /dev/null -X POST "$MOCK_URL/_mock/reset"; }
# mock_stat FIELD: a counter of /_mock/stats. The connection that asks is
# itself counted, so one is taken off "connections".
mock_stat() {
	local v
	v=$("${CURL[@]}" "$MOCK_URL/_mock/stats" | sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p")
	[[ $1 == connections ]] && v=$((v - 1))
	echo "$v"
}

# rss_kb PID FIELD: VmRSS or VmHWM of a process, in kB.
rss_kb() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# sampler PID OUT: every 100 ms, one line "VmRSS VmHWM open-fds" (kB, kB, n).
sampler() {
	local pid=$1 out=$2 k v rest rss hwm fds
	while [[ -r /proc/$pid/status ]]; do
		rss=0 hwm=0
		{ while read -r k v rest; do
			case $k in
			VmRSS:) rss=$v ;;
			VmHWM:) hwm=$v ;;
			esac
		done; } 2>/dev/null </proc/"$pid"/status || break
		fds=(/proc/"$pid"/fd/*)
		echo "$rss $hwm ${#fds[@]}" >>"$out"
		sleep 0.1
	done
}
start_sampler() {
	: >"$2"
	sampler "$1" "$2" &
	SAMPLER_PID=$!
}
# stop_sampler PID OUT: stops it and sets PEAK_MB (max of sampled VmRSS and
# the final VmHWM) and PEAK_FDS.
stop_sampler() {
	local hwm
	hwm=$(rss_kb "$1" VmHWM)
	stop_pid "$SAMPLER_PID"
	SAMPLER_PID=""
	read -r PEAK_MB PEAK_FDS < <(awk -v h="${hwm:-0}" '
		{ if ($1 > m) m = $1; if ($2 > m) m = $2; if ($3 > f) f = $3 }
		END { if (h > m) m = h; printf "%.1f %d\n", m / 1024, f }' "$2")
}

# wrk_run NAME THREADS CONNS SECONDS URL: runs wrk with the POST script and
# sets W_RPS, W_P50, W_P99 (ms), W_REQS, W_ERR (non-2xx and socket errors).
wrk_run() {
	local name=$1 t=$2 c=$3 d=$4 url=$5 out="$TMP/wrk.$1.txt"
	run timeout -k 5 $((d + 60)) wrk -t"$t" -c"$c" -d"${d}s" --timeout 30s --latency -s "$TMP/post.lua" "$url" >"$out" 2>&1 ||
		{
			say "wrk ($name) failed:"
			cat "$out" >&2
			exit 1
		}
	read -r W_RPS W_P50 W_P99 W_REQS < <(awk '
		function ms(s) {
			if (s ~ /us$/) return substr(s, 1, length(s) - 2) / 1000
			if (s ~ /ms$/) return substr(s, 1, length(s) - 2) + 0
			if (s ~ /m$/) return substr(s, 1, length(s) - 1) * 60000
			if (s ~ /s$/) return substr(s, 1, length(s) - 1) * 1000
			return s + 0
		}
		/^Requests\/sec:/ { rps = $2 }
		/requests in/ { reqs = $1 }
		$1 == "50%" { p50 = ms($2) }
		$1 == "99%" { p99 = ms($2) }
		END { printf "%s %.3f %.3f %s\n", rps, p50, p99, reqs }' "$out")
	W_ERR=""
	local non2xx sock
	non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
	sock=$(sed -n 's/^ *Socket errors: //p' "$out")
	[[ -n $non2xx ]] && W_ERR="$non2xx non-2xx"
	[[ -n $sock ]] && W_ERR="${W_ERR:+$W_ERR; }socket errors: $sock"
	say "   $name: $W_REQS requests, $W_RPS req/s, p50 ${W_P50} ms, p99 ${W_P99} ms${W_ERR:+ ($W_ERR)}"
}

# ttfb_run NAME URL: sets T_P50 T_P99 E_P50 E_P99 T_REQ T_ERR.
ttfb_run() {
	local line
	run timeout -k 5 300 "$TMP/ttfb" -url "$2" -n "$TTFB_N" -rounds "$TTFB_ROUNDS" -warmup 1 >"$TMP/ttfb.$1.out" 2>"$TMP/ttfb.$1.err" ||
		{
			cat "$TMP/ttfb.$1.err" >&2
			die "the ttfb probe failed ($1)"
		}
	line=$(tail -n 1 "$TMP/ttfb.$1.out")
	field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" <<<"$line"; }
	T_REQ=$(field requests) T_ERR=$(field errors)
	T_P50=$(field ttfb_p50_ms) T_P99=$(field ttfb_p99_ms)
	E_P50=$(field event_p50_ms) E_P99=$(field event_p99_ms)
	say "   $1: $T_REQ streams, $T_ERR errors, ttfb p50 $T_P50 ms p99 $T_P99 ms, first event p50 $E_P50 ms p99 $E_P99 ms"
}

# upload_run NAME URL COUNT: COUNT concurrent uploads of the body; sets
# U_OK ("intact" or what went wrong) and U_SECS (slowest upload).
upload_run() {
	local name=$1 url=$2 n=$3 i pids=() bad=0 code secs sha slowest=0
	for i in $(seq "$n"); do
		curl -s --noproxy '*' --max-time 120 -H 'Expect:' \
			-H 'Content-Type: application/octet-stream' -H 'Authorization: Bearer sk-loadtest-client' \
			--data-binary @"$TMP/body.bin" -o "$TMP/up.$name.$i.json" \
			-w '%{http_code} %{time_total}\n' "$url" >"$TMP/up.$name.$i.meta" &
		pids+=($!)
	done
	for i in $(seq "$n"); do
		wait "${pids[$((i - 1))]}" || bad=$((bad + 1))
	done
	for i in $(seq "$n"); do
		read -r code secs <"$TMP/up.$name.$i.meta" || code=000 secs=0
		sha=$(sed -n 's/.*"sha256":"\([0-9a-f]*\)".*/\1/p' "$TMP/up.$name.$i.json" 2>/dev/null || true)
		if [[ $code != 200 || $sha != "$BODY_SHA" ]]; then
			bad=$((bad + 1))
			say "   $name upload $i: HTTP $code, sha256 ${sha:-none} (want $BODY_SHA)"
		fi
		slowest=$(awk -v a="$slowest" -v b="$secs" 'BEGIN { print (b > a ? b : a) }')
	done
	U_SECS=$slowest
	if [[ $bad == 0 ]]; then U_OK="intact"; else U_OK="$bad of $n NOT intact"; fi
	say "   $name: $n × 20 MiB, $U_OK (sha256), slowest ${U_SECS} s"
}

# ---------------------------------------------------------------- table
ROWS=()
row() { ROWS+=("| $1 | $2 | $3 | $4 |"); }
f2() { awk -v x="$1" 'BEGIN { printf "%.2f", x }'; }
f0() { awk -v x="$1" 'BEGIN { printf "%.0f", x }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "n/a" }'; }
added() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.3f ms", a - b }'; }
err() { [[ -n $1 ]] && printf ' (%s)' "$1" || true; }

# ---------------------------------------------------------------- run
START=$(date +%s)
start_mock
start_proxy false
say "== mock upstream on $MOCK_URL, gpt-load on $PROXY_URL ($NKEYS keys, MAX_CONCURRENT_REQUESTS=4096, LOG_LEVEL=warn)"
say "== access logging is OFF for the comparison (LOG_ENABLE_REQUEST=false, like nginx's access_log off); one extra run of workload 1 has it on"
[[ $SHORT == 1 ]] && say "== SHORT=1: shortened run (${D1} s wrk runs, $SLOW_N slow streams of ${SLOW_SECS} s, one 20 MiB body); docs/benchmarks.md is not written"
CHAT=/v1/chat/completions
COMPLETION_BYTES=$("${CURL[@]}" -X POST --data-binary @"$TMP/chat.json" "$MOCK_URL$CHAT" | wc -c)

say "== 1. non-streaming, 64 connections, ${D1} s (wrk -t2 -c64); 6. connections opened upstream"
mock_reset
wrk_run w1-direct 2 64 "$D1" "$MOCK_URL$CHAT"
w1d=("$W_RPS" "$W_P50" "$W_P99" "$W_ERR" "$W_REQS")
w6d_conn=$(mock_stat connections) w6d_req=$(mock_stat requests)
mock_reset
wrk_run w1-proxy 2 64 "$D1" "$PROXY_URL$CHAT"
w1p=("$W_RPS" "$W_P50" "$W_P99" "$W_ERR" "$W_REQS")
w6p_conn=$(mock_stat connections) w6p_req=$(mock_stat requests)
say "   upstream connections: direct $w6d_conn (requests $w6d_req), via gpt-load $w6p_conn (requests $w6p_req)"

say "== 1R. workload 1 again, via gpt-load restarted with REDIS_URL (redis-server on loopback, no persistence)"
start_redis
restart_proxy false "$REDIS_URL"
w1r_port=$REDIS_PORT
say "   redis-server on 127.0.0.1:$REDIS_PORT (pid $REDIS_PID); gpt-load on $PROXY_URL with REDIS_URL=$REDIS_URL (/health: redis up)"
mock_reset
wrk_run w1-proxy-redis 2 64 "$D1" "$PROXY_URL$CHAT"
w1r=("$W_RPS" "$W_P50" "$W_P99" "$W_ERR" "$W_REQS")
# Counters reach Redis about twice a second, and gpt-load flushes the rest
# when it stops: stop it before counting what Redis holds.
stop_pid "$PROXY_PID"
PROXY_PID=""
w1r_dbsize=$(rcli dbsize || echo "?")
w1r_keys=$(rcli --scan | sort | paste -sd ' ' - || true)
w1r_total=$(rcli hget "gpt-load:counters" total || true)
stop_pid "$REDIS_PID"
REDIS_PID=""
say "   Redis afterwards: dbsize $w1r_dbsize (${w1r_keys:-no keys}); cluster counter total ${w1r_total:-none}"
start_proxy false

say "== 2. non-streaming, 1 connection, ${D1} s (wrk -t1 -c1)"
wrk_run w2-direct 1 1 "$D1" "$MOCK_URL$CHAT"
w2d=("$W_RPS" "$W_P50" "$W_P99" "$W_ERR")
wrk_run w2-proxy 1 1 "$D1" "$PROXY_URL$CHAT"
w2p=("$W_RPS" "$W_P50" "$W_P99" "$W_ERR")

say "== 3. time to first byte, $TTFB_N concurrent streams (20 events, 20 ms apart), 1 warm-up + $TTFB_ROUNDS rounds"
SSE_Q="?stream=1&chunks=20&gap_ms=20"
ttfb_run w3-direct "$MOCK_URL$CHAT$SSE_Q"
w3d=("$T_P50" "$T_P99" "$E_P50" "$E_P99" "$T_ERR" "$T_REQ")
ttfb_run w3-proxy "$PROXY_URL$CHAT$SSE_Q"
w3p=("$T_P50" "$T_P99" "$E_P50" "$E_P99" "$T_ERR" "$T_REQ")

say "== 4. $SLOW_N concurrent slow streams ($SLOW_CHUNKS events, $SLOW_GAP ms apart: ~${SLOW_SECS} s each; wrk -c$SLOW_N -d${SLOW_WRK}s)"
SLOW_Q="?stream=1&chunks=$SLOW_CHUNKS&gap_ms=$SLOW_GAP"
# A fresh mock (same port) so its peak is this workload's own.
stop_pid "$MOCK_PID"
start_mock "$MOCK_ADDR"
start_sampler "$MOCK_PID" "$TMP/rss.w4-direct"
mock_reset
wrk_run w4-direct 2 "$SLOW_N" "$SLOW_WRK" "$MOCK_URL$CHAT$SLOW_Q"
w4d=("$W_REQS" "$W_ERR" "$(mock_stat connections)")
stop_sampler "$MOCK_PID" "$TMP/rss.w4-direct"
w4d_rss=$PEAK_MB
restart_proxy false
w4p_idle=$(awk -v k="$(rss_kb "$PROXY_PID" VmRSS)" 'BEGIN { printf "%.1f", k / 1024 }')
start_sampler "$PROXY_PID" "$TMP/rss.w4-proxy"
mock_reset
wrk_run w4-proxy 2 "$SLOW_N" "$SLOW_WRK" "$PROXY_URL$CHAT$SLOW_Q"
w4p=("$W_REQS" "$W_ERR" "$(mock_stat connections)")
stop_sampler "$PROXY_PID" "$TMP/rss.w4-proxy"
w4p_rss=$PEAK_MB w4p_fds=$PEAK_FDS
say "   peak RSS: mock $w4d_rss MiB (direct), gpt-load $w4p_rss MiB (idle at start $w4p_idle MiB, peak open fds $w4p_fds)"

declare -A w5
for n in $BODY_CASES; do
	say "== 5. $n concurrent 20 MiB request bodies (curl --data-binary, POST /v1/files; sha256 checked by the mock)"
	upload_run "w5-$n-direct" "$MOCK_URL/v1/files" "$n"
	w5[$n.d_ok]=$U_OK w5[$n.d_s]=$U_SECS
	restart_proxy false
	start_sampler "$PROXY_PID" "$TMP/rss.w5-$n"
	upload_run "w5-$n-proxy" "$PROXY_URL/v1/files" "$n"
	stop_sampler "$PROXY_PID" "$TMP/rss.w5-$n"
	w5[$n.p_ok]=$U_OK w5[$n.p_s]=$U_SECS w5[$n.rss]=$PEAK_MB
	say "   gpt-load peak RSS: $PEAK_MB MiB"
done

say "== 1 again, via gpt-load with the access log ON (LOG_ENABLE_REQUEST=true, LOG_LEVEL=info, to a file)"
restart_proxy true
mock_reset
wrk_run w1-proxy-log 2 64 "$D1" "$PROXY_URL$CHAT"
w1l=("$W_RPS" "$W_P50" "$W_P99" "$W_ERR" "$W_REQS")
w1l_conn=$(mock_stat connections)
w1l_lines=$(wc -l <"$PROXY_LOG")
say "   access log: $w1l_lines lines written"

stop_pid "$PROXY_PID"
PROXY_PID=""
stop_pid "$MOCK_PID"
MOCK_PID=""
ELAPSED=$(($(date +%s) - START))

# ---------------------------------------------------------------- report
row "1. 64 conns, ${D1} s, non-streaming: throughput (req/s)" "$(f0 "${w1d[0]}")$(err "${w1d[3]}")" "$(f0 "${w1p[0]}")$(err "${w1p[3]}")" "$(ratio "${w1p[0]}" "${w1d[0]}")"
row "1. … p50 latency (ms)" "$(f2 "${w1d[1]}")" "$(f2 "${w1p[1]}")" "$(ratio "${w1p[1]}" "${w1d[1]}")"
row "1. … p99 latency (ms)" "$(f2 "${w1d[2]}")" "$(f2 "${w1p[2]}")" "$(ratio "${w1p[2]}" "${w1d[2]}")"
row "1R. same as 1, gpt-load with REDIS_URL: throughput (req/s)" "$(f0 "${w1d[0]}")" "$(f0 "${w1r[0]}")$(err "${w1r[3]}") (without Redis: $(f0 "${w1p[0]}"))" "$(ratio "${w1r[0]}" "${w1p[0]}") of without Redis ($(ratio "${w1r[0]}" "${w1d[0]}") of direct)"
row "1R. … p50 / p99 latency (ms)" "$(f2 "${w1d[1]}") / $(f2 "${w1d[2]}")" "$(f2 "${w1r[1]}") / $(f2 "${w1r[2]}") (without Redis: $(f2 "${w1p[1]}") / $(f2 "${w1p[2]}"))" "$(ratio "${w1r[1]}" "${w1p[1]}") / $(ratio "${w1r[2]}" "${w1p[2]}") of without Redis"
row "1+. same, access log ON: throughput (req/s)" "$(f0 "${w1d[0]}")" "$(f0 "${w1l[0]}")$(err "${w1l[3]}")" "$(ratio "${w1l[0]}" "${w1d[0]}") ($(ratio "${w1l[0]}" "${w1p[0]}") of log off)"
row "1+. … p50 / p99 latency (ms)" "$(f2 "${w1d[1]}") / $(f2 "${w1d[2]}")" "$(f2 "${w1l[1]}") / $(f2 "${w1l[2]}")" "$(ratio "${w1l[1]}" "${w1d[1]}") / $(ratio "${w1l[2]}" "${w1d[2]}")"
row "2. 1 conn, ${D1} s: throughput (req/s)" "$(f0 "${w2d[0]}")$(err "${w2d[3]}")" "$(f0 "${w2p[0]}")$(err "${w2p[3]}")" "$(ratio "${w2p[0]}" "${w2d[0]}")"
row "2. … p50 latency (ms)" "$(f2 "${w2d[1]}")" "$(f2 "${w2p[1]}")" "$(added "${w2p[1]}" "${w2d[1]}") added"
row "2. … p99 latency (ms)" "$(f2 "${w2d[2]}")" "$(f2 "${w2p[2]}")" "$(added "${w2p[2]}" "${w2d[2]}") added"
row "3. $TTFB_N concurrent streams: time to first byte p50 / p99 (ms)" "$(f2 "${w3d[0]}") / $(f2 "${w3d[1]}")" "$(f2 "${w3p[0]}") / $(f2 "${w3p[1]}")" "$(added "${w3p[0]}" "${w3d[0]}") / $(added "${w3p[1]}" "${w3d[1]}")"
row "3. … time to first SSE event p50 / p99 (ms)" "$(f2 "${w3d[2]}") / $(f2 "${w3d[3]}")" "$(f2 "${w3p[2]}") / $(f2 "${w3p[3]}")" "$(added "${w3p[2]}" "${w3d[2]}") / $(added "${w3p[3]}" "${w3d[3]}")"
row "3. … streams measured (errors)" "${w3d[5]} (${w3d[4]})" "${w3p[5]} (${w3p[4]})" ""
row "4. $SLOW_N slow streams (~${SLOW_SECS} s each): peak RSS (MiB)" "$w4d_rss (the mock)" "$w4p_rss (gpt-load; $w4p_idle idle)" "$(ratio "$w4p_rss" "$w4d_rss") of the mock's"
row "4. … streams completed / connections the mock accepted" "${w4d[0]} / ${w4d[2]}$(err "${w4d[1]}")" "${w4p[0]} / ${w4p[2]}$(err "${w4p[1]}")" ""
row "4. … gpt-load peak open file descriptors" "n/a" "$w4p_fds" ""
for n in $BODY_CASES; do
	row "5. $n × 20 MiB body at once: gpt-load peak RSS (MiB)" "n/a (the mock hashes as it reads)" "${w5[$n.rss]}" ""
	row "5. … body arrived intact (sha256) / slowest upload (s)" "${w5[$n.d_ok]} / $(f2 "${w5[$n.d_s]}")" "${w5[$n.p_ok]} / $(f2 "${w5[$n.p_s]}")" "$(ratio "${w5[$n.p_s]}" "${w5[$n.d_s]}")"
done
row "6. connections opened to the upstream during 1." "$w6d_conn (wrk's own, for 64)" "$w6p_conn (gpt-load's, for 64 client conns)" "$(ratio "$w6p_conn" "$w6d_conn")"
per_conn() { awk -v r="$1" -v c="$2" 'BEGIN { printf "%.0f", (c > 0 ? r / c : 0) }'; }
row "6. … requests per upstream connection" "$(per_conn "$w6d_req" "$w6d_conn")" "$(per_conn "$w6p_req" "$w6p_conn")" ""
row "6+. … with the access log ON" "" "$w1l_conn" ""

DATE=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
CPU=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git --no-optional-locks status --porcelain 2>/dev/null || true) ]]; then COMMIT="$COMMIT-dirty"; fi
WRKV=$({ wrk -v 2>&1 || true; } | awk 'NR == 1 { print $1, $2 }')
GOV=$(go version | awk '{ print $3, $4 }')
REDISV=$(redis-server --version | awk '{ sub(/^v=/, "", $3); print "redis-server", $3 }')

report() {
	echo "Run: $DATE on $(nproc) CPUs (${CPU:-unknown CPU}), Linux $(uname -r); $GOV; $WRKV; gpt-load $COMMIT."
	echo "The load generator, the mock upstream and gpt-load share these CPUs on 127.0.0.1."
	echo
	echo "| workload | direct to the mock | via gpt-load | ratio / added |"
	echo "|---|---|---|---|"
	printf '%s\n' "${ROWS[@]}"
	echo
	echo "- gpt-load ran with LOG_ENABLE_REQUEST=false (access logging off, as nginx's \`access_log off\` would be in the same comparison),"
	echo "  LOG_LEVEL=warn, MAX_CONCURRENT_REQUESTS=4096, $NKEYS keys, defaults otherwise. Rows 1+ and 6+ are the same run with the access log on (LOG_LEVEL=info, to a file: $w1l_lines lines)."
	echo "- 1R: the same wrk run as 1 (64 connections, ${D1} s, non-streaming) through gpt-load restarted with the same settings plus"
	echo "  REDIS_URL=redis://127.0.0.1:$w1r_port/0, a $REDISV started by this script on loopback (\`--save \"\" --appendonly no\`);"
	echo "  the run starts once /health shows \`\"redis\": \"up\"\`. The issue's target is throughput within 5 % of without Redis (ratio ≥ 0.95×): reported here, not asserted."
	echo "  Redis afterwards held $w1r_dbsize key(s)${w1r_keys:+ ($w1r_keys)}, cluster request total ${w1r_total:-none} (wrk counted ${w1r[4]}, without the requests still in flight when it stopped); with every key healthy only the counters hash is expected."
	echo "- 1, 2: wrk POSTs a ${#CHAT_BODY}-byte chat body; the answer is a ${COMPLETION_BYTES}-byte chat.completion. Latency is wrk's (\`--latency\`)."
	echo "- 3: cmd/ttfb opens $TTFB_N streams at once (20 events 20 ms apart), 1 unmeasured warm-up round, then $TTFB_ROUNDS rounds; time to first byte is httptrace's GotFirstResponseByte, first SSE event is the first body byte."
	echo "- 4: wrk -c$SLOW_N -d${SLOW_WRK}s on streams of $SLOW_CHUNKS events $SLOW_GAP ms apart; peak RSS is the larger of VmHWM and VmRSS sampled every 100 ms, of a freshly started process (gpt-load restarted, mock restarted)."
	echo "- 5: gpt-load restarted before each case; curl --data-binary with \`Expect:\` off; the mock returns the body's sha256."
	echo "- 6: the mock counts TCP connections it accepted (ConnState StateNew) during workload 1; wrk opens one probe connection at start besides its 64, so direct shows 65."
	[[ -n $NOFILE_NOTE ]] && echo "- Note: $NOFILE_NOTE."
	echo "- Whole run: ${ELAPSED} s. Numbers are measurements, not pass/fail thresholds."
}

echo
report
echo

if [[ $SHORT == 1 ]]; then
	say "SHORT=1: docs/benchmarks.md left as it is"
	exit 0
fi

DOC=docs/benchmarks.md
{
	echo "<!-- loadtest:begin -->"
	echo "<!-- generated by scripts/loadtest.sh (make loadtest); edit outside these markers -->"
	echo
	report
	echo "<!-- loadtest:end -->"
} >"$TMP/section.md"
if [[ -f $DOC ]] && grep -q '^<!-- loadtest:begin -->' "$DOC" && grep -q '^<!-- loadtest:end -->' "$DOC"; then
	awk -v sec="$TMP/section.md" '
		/^<!-- loadtest:begin -->/ { while ((getline l < sec) > 0) print l; skip = 1; next }
		/^<!-- loadtest:end -->/ { skip = 0; next }
		!skip { print }' "$DOC" >"$TMP/doc.md"
	cat "$TMP/doc.md" >"$DOC"
elif [[ -f $DOC ]]; then
	{
		echo
		cat "$TMP/section.md"
	} >>"$DOC"
else
	mkdir -p docs
	{
		echo "# Benchmarks"
		echo
		echo "End-to-end load test on loopback: the same workloads straight to a mock"
		echo "OpenAI upstream and through gpt-load, run with \`make loadtest\`"
		echo "(scripts/loadtest.sh). The section between the markers is rewritten on"
		echo "every run; notes outside it are kept."
		echo
		cat "$TMP/section.md"
	} >"$DOC"
fi
say "wrote $DOC"
