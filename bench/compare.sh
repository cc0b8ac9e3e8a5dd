#!/usr/bin/env bash
# compare.sh — Usher's gateway against nginx as a plain reverse proxy, on the
# same machine, with the same backend binary (examples/hello) and the same wrk
# load. See bench/README.md.
#
# Environment:
#   BENCH_DURATION     wrk duration of each measured run (default 10s)
#   BENCH_WARMUP       wrk warm-up before each measured run (default 2s, 0 to skip)
#   BENCH_THREADS      wrk threads (default 2)
#   BENCH_CONNECTIONS  wrk connections (default 64)
#   KEEP_WORKDIR=1     keep the temporary directory (logs, configs) for inspection
#   BENCH_TLS=0        skip the HTTPS comparison (default: run it too; both
#                      nginx and usher serve TLS with one self-signed
#                      certificate made here with openssl)
#
# Everything listens on and talks to 127.0.0.1 only.
set -euo pipefail

DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-2s}
THREADS=${BENCH_THREADS:-2}
CONNECTIONS=${BENCH_CONNECTIONS:-64}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/usher-bench.XXXXXX")
PIDS=()

log() { printf '==> %s\n' "$*" >&2; }
FAILURE=
die() {
	FAILURE=$*
	printf 'compare.sh: FAIL: %s\n' "$*" >&2
	exit 1
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	# Usher's instances are its children (the process runtime); remember them
	# so they are stopped even if usher has to be killed.
	if [[ -n ${USHER_PID:-} ]]; then
		# They go first in the list, so they are signalled after usher.
		local children
		children=$(ps -o pid= --ppid "$USHER_PID" 2>/dev/null || true)
		# shellcheck disable=SC2206
		PIDS=($children "${PIDS[@]}")
	fi
	# Stop what we started, newest first, by PID only.
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		kill -TERM "${PIDS[i]}" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		for _ in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	if [[ $rc -ne 0 ]]; then
		for f in usher.log nginx/error.log backend.log; do
			[[ -s $WORK/$f ]] && { echo "--- tail of $f" >&2; tail -n 20 "$WORK/$f" >&2; }
		done
	fi
	[[ -n $FAILURE ]] && printf 'compare.sh: FAIL: %s\n' "$FAILURE" >&2
	if [[ ${KEEP_WORKDIR:-} == 1 ]]; then
		echo "work directory kept: $WORK" >&2
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
# A command failing under set -e says which one it was.
trap 'FAILURE=${FAILURE:-"line $LINENO: $BASH_COMMAND (exit $?)"}' ERR
trap 'exit 130' INT
trap 'exit 143' TERM

TLS=${BENCH_TLS:-1}
for tool in go nginx wrk curl $([[ $TLS == 1 ]] && echo openssl); do
	command -v "$tool" >/dev/null || die "$tool not found (Debian: apt-get install -y nginx-light wrk curl)"
done

# free_port prints a loopback TCP port nobody listens on right now, below the
# ephemeral range so that outgoing connections are unlikely to hold it.
free_port() {
	local lo=20000 hi=32767 p
	read -r hi _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
	hi=$((hi > lo + 1000 ? hi - 1 : 32767))
	for _ in $(seq 100); do
		p=$((lo + RANDOM % (hi - lo)))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	die "no free port found"
}

# wait_http URL PID: wait until URL answers; fail if PID exits first.
wait_http() {
	local url=$1 pid=$2
	for _ in $(seq 150); do
		if curl -s -o /dev/null --max-time 1 "$url"; then
			kill -0 "$pid" 2>/dev/null && return 0
			return 1
		fi
		kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

# forget_last_pid stops and reaps the last process started, which failed to
# come up, and drops it from PIDS so its PID is never signalled again.
forget_last_pid() {
	kill -TERM "${PIDS[-1]}" 2>/dev/null || true
	wait "${PIDS[-1]}" 2>/dev/null || true
	unset 'PIDS[-1]'
}

# --- (a) build ---------------------------------------------------------------
log "building usher and examples/hello"
(cd "$ROOT" && go build -o "$WORK/usher" ./cmd/usher && go build -o "$WORK/hello" ./examples/hello) ||
	die "go build failed (does the tree compile right now?)"

# --- (b) usher serve on a free loopback port -----------------------------------
export HOME=$WORK/home
export USHER_CONFIG=$WORK/data/config.json
mkdir -p "$HOME" "$WORK/data"
log "starting usher serve"
"$WORK/usher" serve --addr 127.0.0.1:0 --data-dir "$WORK/data" >"$WORK/usher.log" 2>&1 &
USHER_PID=$!
PIDS+=("$USHER_PID")
USHER_ADDR=
for _ in $(seq 150); do
	USHER_ADDR=$(sed -n 's/.*msg="usher serving" addr=\([0-9.]*:[0-9]*\).*/\1/p' "$WORK/usher.log" | head -n1)
	[[ -n $USHER_ADDR ]] && break
	kill -0 "$USHER_PID" 2>/dev/null || die "usher serve exited"
	sleep 0.1
done
[[ -n $USHER_ADDR ]] || die "usher serve did not report its address"
USHER_PORT=${USHER_ADDR##*:}
[[ ${USHER_ADDR%:*} == 127.0.0.1 ]] || die "usher listens on $USHER_ADDR, not loopback"
wait_http "http://127.0.0.1:$USHER_PORT/healthz" "$USHER_PID" || die "usher serve is not healthy"
[[ -s $USHER_CONFIG ]] || die "usher wrote no CLI configuration at $USHER_CONFIG"
usher() { "$WORK/usher" "$@"; }

# --- (c) private service, service account, invoker grant, token ----------------
log "deploying hello (private)"
usher run deploy hello --image "file://$WORK/hello" --no-allow-unauthenticated >/dev/null 2>"$WORK/deploy.log" ||
	die "deploy failed: $(cat "$WORK/deploy.log")"
SERVICE_URL=$(usher run services describe hello --format 'value(status.url)')
[[ $SERVICE_URL == http://*:"$USHER_PORT" ]] || die "unexpected service URL $SERVICE_URL"
SERVICE_HOSTPORT=${SERVICE_URL#http://}
log "service URL $SERVICE_URL"

SA=$(usher iam service-accounts create bench-invoker --format 'value(email)' 2>"$WORK/sa.log") ||
	die "service account creation failed: $(cat "$WORK/sa.log")"
[[ $SA == bench-invoker@*.iam.gserviceaccount.com ]] || die "unexpected service account email $SA"
usher run services add-iam-policy-binding hello --member "serviceAccount:$SA" --role roles/run.invoker >/dev/null 2>&1 ||
	die "granting roles/run.invoker to $SA failed"
TOKEN=$(usher auth print-identity-token --impersonate-service-account "$SA" --audiences "$SERVICE_URL")
[[ -n $TOKEN ]] || die "no identity token"

GATEWAY_URL="http://127.0.0.1:$USHER_PORT/"
status() { curl -s -o /dev/null -w '%{http_code}' --max-time 60 -H "Host: $SERVICE_HOSTPORT" "$@" "$GATEWAY_URL"; }
# The first authorized request cold-starts the instance.
[[ $(status -H "Authorization: Bearer $TOKEN") == 200 ]] || die "gateway with the token does not answer 200"
[[ $(status) == 401 ]] || die "gateway without a token does not answer 401: the service is not private"
log "gateway: 200 with the token, 401 without"

# --- (d) plain backend (same binary) and nginx in front of it -------------------
# A port picked by free_port can be taken before we bind it: retry on a new
# one when the process exits instead of serving.
for attempt in 1 2 3 4 5; do
	BACKEND_PORT=$(free_port)
	log "starting plain backend on 127.0.0.1:$BACKEND_PORT"
	PORT=$BACKEND_PORT "$WORK/hello" >"$WORK/backend.log" 2>&1 &
	BACKEND_PID=$!
	PIDS+=("$BACKEND_PID")
	BACKEND_URL="http://127.0.0.1:$BACKEND_PORT/"
	wait_http "$BACKEND_URL" "$BACKEND_PID" && break
	forget_last_pid
	[[ $attempt == 5 ]] && die "the plain backend did not start: $(cat "$WORK/backend.log")"
done

NGINX=$WORK/nginx
mkdir -p "$NGINX/tmp"
# One self-signed certificate for nginx and usher alike (HTTPS runs).
CERT=$WORK/cert.pem KEY=$WORK/key.pem
NGINX_TLS_SERVER=
if [[ $TLS == 1 ]]; then
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=localhost \
		-addext "subjectAltName=DNS:localhost,DNS:*.us-central1.run.localhost,IP:127.0.0.1" \
		-keyout "$KEY" -out "$CERT" 2>/dev/null || die "openssl could not make a certificate"
fi
for attempt in 1 2 3 4 5; do
	NGINX_PORT=$(free_port)
	if [[ $TLS == 1 ]]; then
		NGINX_TLS_PORT=$(free_port)
		NGINX_TLS_SERVER="server {
        listen 127.0.0.1:$NGINX_TLS_PORT ssl;
        ssl_certificate $CERT;
        ssl_certificate_key $KEY;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:1m;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
    }"
	fi
	cat >"$NGINX/nginx.conf" <<EOF
worker_processes auto;
pid $NGINX/nginx.pid;
error_log $NGINX/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $NGINX/tmp/body;
    proxy_temp_path $NGINX/tmp/proxy;
    fastcgi_temp_path $NGINX/tmp/fastcgi;
    uwsgi_temp_path $NGINX/tmp/uwsgi;
    scgi_temp_path $NGINX/tmp/scgi;
    upstream backend {
        server 127.0.0.1:$BACKEND_PORT;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
    $NGINX_TLS_SERVER
}
EOF
	nginx -t -q -e "$NGINX/error.log" -c "$NGINX/nginx.conf" -p "$NGINX" || die "nginx config test failed"
	log "starting nginx on 127.0.0.1:$NGINX_PORT"
	nginx -e "$NGINX/error.log" -c "$NGINX/nginx.conf" -p "$NGINX" -g 'daemon off;' &
	NGINX_PID=$!
	PIDS+=("$NGINX_PID")
	NGINX_URL="http://127.0.0.1:$NGINX_PORT/"
	wait_http "$NGINX_URL" "$NGINX_PID" && break
	forget_last_pid
	[[ $attempt == 5 ]] && die "nginx did not start: $(tail -n 3 "$NGINX/error.log")"
done
[[ $(curl -s -o /dev/null -w '%{http_code}' "$NGINX_URL") == 200 ]] || die "nginx does not answer 200"

# --- (e) wrk, one target at a time ---------------------------------------------
# run_wrk NAME URL [wrk -H args...]: sets RPS to the requests/s of NAME.
# Any non-2xx answer fails the run, for every target. Socket errors fail the
# gateway's run when they are connect/read/write errors (the gateway dropped
# connections); wrk timeouts (2 s, possible on a loaded machine) and any
# socket errors of the other targets are reported as warnings.
WARNINGS=()
run_wrk() {
	local name=$1 url=$2 out rps errs c r w t
	shift 2
	if [[ $WARMUP != 0 && $WARMUP != 0s ]]; then
		wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" "$@" "$url" >/dev/null
	fi
	out=$WORK/wrk-$name.txt
	wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$@" "$url" >"$out"
	sed 's/^/    /' "$out" >&2
	if grep -q 'Non-2xx or 3xx responses' "$out"; then
		die "$name: $(grep 'Non-2xx or 3xx responses' "$out" | tr -s ' ')"
	fi
	errs=$(grep 'Socket errors' "$out" | tr -s ' ' || true)
	if [[ -n $errs ]]; then
		read -r c r w t < <(sed 's/[^0-9]\+/ /g' <<<"$errs")
		if [[ $name == gateway* && $((c + r + w)) -gt 0 ]]; then
			die "$name: $errs"
		fi
		WARNINGS+=("WARNING: $name:$errs (requests/s is suspect)")
	fi
	rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
	[[ -n $rps ]] || die "$name: no Requests/sec in wrk output"
	RPS=$rps
}

log "wrk -t$THREADS -c$CONNECTIONS -d$DURATION (warm-up $WARMUP) against nginx"
run_wrk nginx "$NGINX_URL"
NGINX_RPS=$RPS
log "... against the usher gateway (private service, valid token)"
run_wrk gateway "$GATEWAY_URL" -H "Host: $SERVICE_HOSTPORT" -H "Authorization: Bearer $TOKEN"
GATEWAY_RPS=$RPS
log "... against the backend directly"
run_wrk direct "$BACKEND_URL"
DIRECT_RPS=$RPS

# The gateway must still be enforcing after the run.
[[ $(status) == 401 ]] || die "gateway without a token no longer answers 401"

# --- (e2) the same over HTTPS: usher restarted with the certificate ------------
if [[ $TLS == 1 ]]; then
	log "restarting usher serve with --tls-cert/--tls-key"
	kill -TERM "$USHER_PID"
	wait "$USHER_PID" 2>/dev/null || true
	: >"$WORK/usher.log"
	"$WORK/usher" serve --addr 127.0.0.1:0 --data-dir "$WORK/data" --tls-cert "$CERT" --tls-key "$KEY" >"$WORK/usher.log" 2>&1 &
	USHER_PID=$!
	PIDS+=("$USHER_PID")
	USHER_ADDR=
	for _ in $(seq 150); do
		USHER_ADDR=$(sed -n 's/.*msg="usher serving" addr=\([0-9.]*:[0-9]*\).*/\1/p' "$WORK/usher.log" | head -n1)
		[[ -n $USHER_ADDR ]] && break
		kill -0 "$USHER_PID" 2>/dev/null || die "usher serve (TLS) exited"
		sleep 0.1
	done
	[[ -n $USHER_ADDR ]] || die "usher serve (TLS) did not report its address"
	USHER_PORT=${USHER_ADDR##*:}
	export SSL_CERT_FILE=$CERT # the CLI trusts the self-signed certificate
	healthy=
	for _ in $(seq 150); do
		curl -s -o /dev/null --max-time 1 --cacert "$CERT" "https://127.0.0.1:$USHER_PORT/healthz" && { healthy=1; break; }
		kill -0 "$USHER_PID" 2>/dev/null || break
		sleep 0.1
	done
	[[ -n $healthy ]] || die "usher serve (TLS) is not healthy"
	SERVICE_URL=$(usher run services describe hello --format 'value(status.url)')
	[[ $SERVICE_URL == https://*:"$USHER_PORT" ]] || die "unexpected HTTPS service URL $SERVICE_URL"
	SERVICE_HOSTPORT=${SERVICE_URL#https://}
	TOKEN=$(usher auth print-identity-token --impersonate-service-account "$SA" --audiences "$SERVICE_URL")
	GATEWAY_TLS_URL="https://127.0.0.1:$USHER_PORT/"
	tls_status() { curl -s -o /dev/null -w '%{http_code}' --max-time 60 --cacert "$CERT" -H "Host: $SERVICE_HOSTPORT" "$@" "$GATEWAY_TLS_URL"; }
	[[ $(tls_status -H "Authorization: Bearer $TOKEN") == 200 ]] || die "HTTPS gateway with the token does not answer 200"
	[[ $(tls_status) == 401 ]] || die "HTTPS gateway without a token does not answer 401"
	NGINX_TLS_URL="https://127.0.0.1:$NGINX_TLS_PORT/"
	[[ $(curl -s -o /dev/null -w '%{http_code}' --cacert "$CERT" "$NGINX_TLS_URL") == 200 ]] || die "nginx over HTTPS does not answer 200"
	log "wrk over HTTPS (HTTP/1.1, keep-alive) against nginx"
	run_wrk nginx-tls "$NGINX_TLS_URL"
	NGINX_TLS_RPS=$RPS
	log "... against the usher gateway over HTTPS"
	run_wrk gateway-tls "$GATEWAY_TLS_URL" -H "Host: $SERVICE_HOSTPORT" -H "Authorization: Bearer $TOKEN"
	GATEWAY_TLS_RPS=$RPS
	[[ $(tls_status) == 401 ]] || die "HTTPS gateway without a token no longer answers 401"
fi

# --- (f) summary ---------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION on $(nproc) CPUs, backend examples/hello"
printf '%-34s %12s\n' "target" "requests/s"
printf '%-34s %12.0f\n' "nginx -> hello" "$NGINX_RPS"
printf '%-34s %12.0f\n' "usher gateway (private) -> hello" "$GATEWAY_RPS"
printf '%-34s %12.0f\n' "hello directly (ceiling)" "$DIRECT_RPS"
echo "ratio gateway/nginx: $(ratio "$GATEWAY_RPS" "$NGINX_RPS")"
echo "ratio gateway/direct: $(ratio "$GATEWAY_RPS" "$DIRECT_RPS")"
echo "ratio nginx/direct: $(ratio "$NGINX_RPS" "$DIRECT_RPS")"
if [[ $TLS == 1 ]]; then
	echo
	echo "over HTTPS (same self-signed certificate, TLS 1.3, HTTP/1.1 keep-alive):"
	printf '%-34s %12.0f\n' "nginx (https) -> hello" "$NGINX_TLS_RPS"
	printf '%-34s %12.0f\n' "usher gateway (https, private)" "$GATEWAY_TLS_RPS"
	echo "ratio gateway/nginx over HTTPS: $(ratio "$GATEWAY_TLS_RPS" "$NGINX_TLS_RPS")"
fi
for w in "${WARNINGS[@]}"; do echo "$w"; done
