#!/usr/bin/env bash
# carteiro's throughput benchmark, side by side with Postfix, in one run on loopback.
#
#   bench/run.sh              N=20000 messages of about 2 KB (the table in bench/README.md)
#   N=200000 ONLY=carteiro bench/run.sh   the memory run: RSS with a large backlog
#   STORE=all bench/run.sh    the carteiro rows on SQLite, then on PostgreSQL with 1 and 2 instances
#   STORE=postgres INSTANCES=2 bench/run.sh   only PostgreSQL, only 2 instances
#   PG_URL=postgres://user@host:port   the server (a fresh database is made in it per run)
#   PG_N=5000                          another N for the PostgreSQL rows
#
# Upstream: Postfix's smtp-sink; arrivals are read from its own counter (-c),
# the same way for every run.
#   limit     smtp-source -> smtp-sink, 20 reused connections: no queue, no durability
#   postfix   smtp-source (20 sessions) -> a private Postfix on 127.0.0.1 -> smtp-sink (relayhost)
#   carteiro  the batch API (1000 a request) or single submissions (8 clients) -> smtp-sink,
#             bundling off and on
# carteiro's data directory and Postfix's queue live on disk; both sync every accepted message.
# On PostgreSQL (STORE=postgres or all), each run gets a fresh database on PG_URL, dropped after it;
# with 2 instances, both serve one database, each on its own port, and the load is spread over
# their APIs (batch requests in turn, the 8 clients 4 on each); peak memory is the instances' sum.
# Needs root (Postfix drops privileges to its own users) and Debian's postfix package; for
# PostgreSQL, psql and a server on PG_URL that lets its user create databases.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-20000}
SIZE=${SIZE:-2048}
ONLY=${ONLY:-all}
SINK_PORT=${SINK_PORT:-25250}
POSTFIX_PORT=${POSTFIX_PORT:-25251}
CARTEIRO_PORT=${CARTEIRO_PORT:-25252}
STORE=${STORE:-sqlite}
INSTANCES=${INSTANCES:-1 2}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
PG_N=${PG_N:-$N}
ADMIN_PASSWORD=bench-admin-password

say() { printf '\033[1mbench:\033[0m %s\n' "$*" >&2; }

for tool in smtp-sink smtp-source postfix; do
    command -v "$tool" >/dev/null || { say "$tool is missing: apt-get install postfix"; exit 1; }
done
[ "$(id -u)" = 0 ] || { say "run as root (Postfix and smtp-sink drop privileges to their own users)"; exit 1; }
case $STORE in
    sqlite) stores=(sqlite) ;;
    postgres) stores=(postgres) ;;
    all) stores=(sqlite postgres) ;;
    *) say "STORE is sqlite, postgres or all, not $STORE"; exit 1 ;;
esac
if [ "$STORE" != sqlite ]; then
    command -v psql >/dev/null || { say "psql is missing: apt-get install postgresql-client"; exit 1; }
    psql "$PG_URL/postgres" -qAtc 'SELECT 1' >/dev/null || { say "cannot reach PostgreSQL at $PG_URL"; exit 1; }
    # Every instance on one database must open the same secrets.
    master_key=$(head -c 32 /dev/urandom | base64)
fi

say "building carteiro (release)"
cargo build --release -q -p carteiro -p carteiro-bench
CARTEIRO=$PWD/target/release/carteiro
LOAD=$PWD/target/release/carteiro-bench

disk=$(mktemp -d /var/tmp/carteiro-bench.XXXXXX)
shm=$(mktemp -d /dev/shm/carteiro-bench.XXXXXX)
chmod 755 "$disk" "$shm"
pids=()
databases=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    postfix -c "$disk/postfix/etc" stop >/dev/null 2>&1 || true
    wait 2>/dev/null || true
    for db in "${databases[@]}"; do drop_database "$db"; done
    rm -rf "$disk" "$shm"
}
drop_database() { psql "$PG_URL/postgres" -qc "DROP DATABASE IF EXISTS $1 WITH (FORCE)" >/dev/null 2>&1 || true; }
trap cleanup EXIT

# The sink, counting what it receives into a file of its own per run.
sink_out=""
start_sink() {
    sink_out="$shm/sink-$1.out"
    smtp-sink -c -u nobody "127.0.0.1:$SINK_PORT" 1024 >"$sink_out" &
    sink_pid=$!
    pids+=("$sink_pid")
    until (exec 3<>"/dev/tcp/127.0.0.1/$SINK_PORT") 2>/dev/null; do sleep 0.05; done
}
stop_sink() { kill "$sink_pid"; wait "$sink_pid" 2>/dev/null || true; }
wait_for_sink() { "$LOAD" wait --sink-out "$sink_out" --count "$N"; }
now() { date +%s.%N; }

# A process and all its descendants.
tree() {
    echo "$1"
    for child in $(pgrep -P "$1" || true); do tree "$child"; done
}

# Peak memory of a process and all its descendants, sampled every 100 ms until stopped: the sum
# of their proportional set sizes (PSS), so that pages the processes share count once.
watch_rss() {
    local root=$1 out=$2 peak=0
    while kill -0 "$root" 2>/dev/null; do
        local total=0
        for pid in $(tree "$root"); do
            total=$((total + $(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0)))
        done
        [ "$total" -gt "$peak" ] && peak=$total && echo "$peak" > "$out"
        sleep 0.1
    done
}

rows=()
row() { rows+=("$(printf '%-40s %12s %12s %12s %12s' "$@")"); }

run_limit() {
    say "limit: smtp-source -> smtp-sink, $N messages"
    start_sink limit
    local t0 t1
    t0=$(now)
    smtp-source -d -s 20 -m "$N" -l "$SIZE" -f bench@example.com -t cliente@example.com "127.0.0.1:$SINK_PORT"
    wait_for_sink
    t1=$(now)
    stop_sink
    limit_rate=$(awk -v n="$N" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
    row "limit (smtp-source -> smtp-sink)" "$limit_rate" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')" "$limit_rate" "-"
}

run_postfix() {
    say "postfix: smtp-source -> Postfix -> smtp-sink, $N messages"
    local pf=$disk/postfix
    mkdir -p "$pf/etc" "$pf/queue" "$pf/data"
    chown postfix "$pf/data"
    cp /etc/postfix/master.cf "$pf/etc/master.cf"
    sed -i "s/^smtp      inet  n       -       y       -       -       smtpd/127.0.0.1:$POSTFIX_PORT inet n - n - - smtpd/" "$pf/etc/master.cf"
    cat > "$pf/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $pf/queue
data_directory = $pf/data
mail_owner = postfix
setgid_group = postdrop
myhostname = bench.localdomain
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:$SINK_PORT
smtpd_relay_restrictions = permit_mynetworks, reject
maillog_file = $pf/maillog
EOF
    start_sink postfix
    postfix -c "$pf/etc" start-fg >"$pf/log" 2>&1 &
    local master=$!
    pids+=("$master")
    until (exec 3<>"/dev/tcp/127.0.0.1/$POSTFIX_PORT") 2>/dev/null; do sleep 0.05; done
    watch_rss "$master" "$disk/postfix.rss" &
    local t0 t1 t2
    t0=$(now)
    smtp-source -s 20 -m "$N" -l "$SIZE" -f bench@example.com -t cliente@example.com "127.0.0.1:$POSTFIX_PORT"
    t1=$(now)
    wait_for_sink
    t2=$(now)
    postfix -c "$pf/etc" stop >/dev/null 2>&1
    wait "$master" 2>/dev/null || true
    stop_sink
    postfix_rate=$(awk -v n="$N" -v a="$t0" -v b="$t2" 'BEGIN { printf "%.0f", n / (b - a) }')
    row "postfix (relayhost)" \
        "$(awk -v n="$N" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')" \
        "$(awk -v a="$t0" -v b="$t2" 'BEGIN { printf "%.2f", b - a }')" \
        "$postfix_rate" \
        "$(awk '{ printf "%.0f", $1 / 1024 }' "$disk/postfix.rss" 2>/dev/null || echo '-')"
}

# One carteiro run: on SQLite, a fresh data directory; on PostgreSQL (instances > 0), a fresh
# database served by that many instances. The sink is the global server.
declare -A e2e_of accept_of
run_carteiro() {
    local mode=$1 bundle=$2 label=$3 instances=${4:-0}
    local n=$N name="carteiro-$mode-$bundle" store=sqlite
    if [ "$instances" -gt 0 ]; then
        n=$PG_N name="carteiro-pg$instances-$mode-$bundle" store="pg$instances"
    fi
    local title="carteiro $label"
    [ "$store" = sqlite ] || title="carteiro/pg x$instances $label"
    say "$title, $n messages"
    start_sink "$name"
    local db="" servers=() urls=() pid_args=() i
    if [ "$store" != sqlite ]; then
        db="carteiro_bench_$$_${name//-/_}"
        psql "$PG_URL/postgres" -qc "CREATE DATABASE $db" >/dev/null
        databases+=("$db")
    fi
    for ((i = 0; i < (instances > 0 ? instances : 1); i++)); do
        local port=$((CARTEIRO_PORT + i)) store_args=(--data-dir "$disk/$name-$i") key=()
        [ -z "$db" ] || store_args+=(--database-url "$PG_URL/$db") key=("CARTEIRO_MASTER_KEY=$master_key")
        # One after the other: the first creates the schema and the administrator.
        env "${key[@]}" CARTEIRO_ADMIN_PASSWORD=$ADMIN_PASSWORD RUST_LOG=${RUST_LOG:-info} \
            "$CARTEIRO" serve "${store_args[@]}" --listen "127.0.0.1:$port" --hostname bench.localdomain \
            >"$disk/$name-$i.out" 2>"$disk/$name-$i.log" &
        servers+=($!)
        pids+=($!)
        until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
            kill -0 "${servers[-1]}" 2>/dev/null || { say "carteiro did not start:"; tail -5 "$disk/$name-$i.log" >&2; exit 1; }
            sleep 0.05
        done
        urls+=(--url "http://127.0.0.1:$port")
        pid_args+=(--pid "${servers[-1]}")
    done
    local result
    result=$("$LOAD" run "${urls[@]}" --admin-password "$ADMIN_PASSWORD" \
        --sink-port "$SINK_PORT" $([ "$bundle" = true ] && echo --bundle) --count "$n" --size "$SIZE" \
        --mode "$mode" --sink-out "$sink_out" "${pid_args[@]}")
    kill -TERM "${servers[@]}"
    for i in "${servers[@]}"; do wait "$i" 2>/dev/null || true; done
    stop_sink
    if [ -n "$db" ]; then
        # For the reading: how many transactions the run cost the database (counted once its
        # connections have closed).
        sleep 1
        say "$title: $(psql "$PG_URL/postgres" -qAtc "SELECT xact_commit FROM pg_stat_database WHERE datname = '$db'") transactions committed"
        drop_database "$db"
    fi
    local accept delivered e2e rss
    accept=$(echo "$result" | sed 's/.*"accept_per_s":\([0-9.]*\).*/\1/')
    delivered=$(echo "$result" | sed 's/.*"delivered_s":\([0-9.]*\).*/\1/')
    e2e=$(echo "$result" | sed 's/.*"e2e_per_s":\([0-9.]*\).*/\1/')
    rss=$(echo "$result" | sed 's/.*"peak_rss_mib":\([0-9.]*\).*/\1/')
    row "$title" "$(printf '%.0f' "$accept")" "$(printf '%.2f' "$delivered")" "$(printf '%.0f' "$e2e")" "$(printf '%.0f' "$rss")"
    e2e_of["$store|$label"]=$(printf '%.0f' "$e2e")
    accept_of["$store|$label"]=$(printf '%.0f' "$accept")
    ratios+=("$(printf '%-40s %14s %14s' "$title" \
        "${postfix_rate:+$(awk -v c="$e2e" -v p="$postfix_rate" 'BEGIN { printf "%.2f", c / p }')}" \
        "${limit_rate:+$(awk -v c="$e2e" -v l="$limit_rate" 'BEGIN { printf "%.2f", c / l }')}")")
}

# The four carteiro rows on one store (instances > 0: PostgreSQL).
run_carteiro_rows() {
    run_carteiro batch false "batch, bundling off" "$@"
    run_carteiro batch true "batch, bundling on" "$@"
    if [ "$ONLY" = all ]; then
        run_carteiro single false "8 clients, bundling off" "$@"
        run_carteiro single true "8 clients, bundling on" "$@"
    fi
}

ratios=()
limit_rate=""
postfix_rate=""
if [ "$ONLY" = all ]; then
    run_limit
    run_postfix
fi
columns=()
for store in "${stores[@]}"; do
    if [ "$store" = sqlite ]; then
        run_carteiro_rows
        columns+=(sqlite)
    else
        for instances in $INSTANCES; do
            run_carteiro_rows "$instances"
            columns+=("pg$instances")
        done
    fi
done

echo
echo "N = $N messages of about $SIZE bytes; $(nproc) cores: $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
[ "$PG_N" = "$N" ] || echo "(on PostgreSQL: N = $PG_N)"
printf '%-40s %12s %12s %12s %12s\n' "run" "accept/s" "sink has all" "e2e msg/s" "peak mem MiB"
printf '%s\n' "${rows[@]}"
echo
printf '%-40s %14s %14s\n' "end-to-end" "x postfix" "x limit"
printf '%s\n' "${ratios[@]}"
if [ "$STORE" != sqlite ]; then
    # The same rows side by side: a column per store (pgK: PostgreSQL, K instances).
    echo
    printf '%-26s' "e2e msg/s (accept/s)"
    for column in "${columns[@]}"; do printf ' %16s' "$column"; done
    echo
    for label in "batch, bundling off" "batch, bundling on" "8 clients, bundling off" "8 clients, bundling on"; do
        [ -n "${e2e_of["${columns[0]}|$label"]:-}" ] || continue
        printf '%-26s' "$label"
        for column in "${columns[@]}"; do
            printf ' %16s' "${e2e_of["$column|$label"]} (${accept_of["$column|$label"]})"
        done
        echo
    done
fi
