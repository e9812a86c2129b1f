#!/usr/bin/env bash
# Tenant isolation under faults: company B's end-to-end rate to smtp-sink, alone and while
# company A's server fails (silent: accepts connections and never answers; down: refuses them)
# with A's messages queued. Each row is a fresh carteiro (SQLite, release build) on loopback.
#
#   bench/isolation.sh            N=20000 messages for B, 2000 waiting for A, two rounds
#   N=5000 A_N=500 ROUNDS=3 bench/isolation.sh
#
# The rows run in turn (none, silent, down; again each round), so that a slow moment of the
# machine does not fall on one row only; each row shows its rounds' mean and each round.
#
# Needs Debian's postfix package (for smtp-sink); as root, smtp-sink drops to nobody.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-20000}
A_N=${A_N:-2000}
ROUNDS=${ROUNDS:-2}
SINK_PORT=${SINK_PORT:-25260}
CARTEIRO_PORT=${CARTEIRO_PORT:-25262}
ADMIN_PASSWORD=bench-admin-password

say() { printf '\033[1mbench:\033[0m %s\n' "$*" >&2; }
command -v smtp-sink >/dev/null || { say "smtp-sink is missing: apt-get install postfix"; exit 1; }

say "building carteiro (release)"
cargo build --release -q -p carteiro -p carteiro-bench
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
CARTEIRO=$TARGET/release/carteiro
LOAD=$TARGET/release/carteiro-bench

work=$(mktemp -d /var/tmp/carteiro-isolation.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
as_sink_user=()
[ "$(id -u)" = 0 ] && as_sink_user=(-u nobody)

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

declare -A rates_of
run() {
    local neighbour=$1 dir=$work/$1-$2
    say "round $2: B sends $N messages; A's server: $neighbour"
    mkdir -p "$dir"
    smtp-sink -c "${as_sink_user[@]}" "127.0.0.1:$SINK_PORT" 1024 >"$dir/sink.out" &
    local sink=$!
    pids+=("$sink")
    until listening "$SINK_PORT"; do sleep 0.05; done
    CARTEIRO_ADMIN_PASSWORD=$ADMIN_PASSWORD "$CARTEIRO" serve --data-dir "$dir/data" \
        --listen "127.0.0.1:$CARTEIRO_PORT" --hostname bench.localdomain >"$dir/out" 2>"$dir/log" &
    local server=$!
    pids+=("$server")
    until listening "$CARTEIRO_PORT"; do
        kill -0 "$server" 2>/dev/null || { say "carteiro did not start:"; tail -5 "$dir/log" >&2; exit 1; }
        sleep 0.05
    done
    local result
    result=$("$LOAD" run --url "http://127.0.0.1:$CARTEIRO_PORT" --admin-password "$ADMIN_PASSWORD" \
        --sink-port "$SINK_PORT" --sink-out "$dir/sink.out" --pid "$server" --count "$N" \
        --neighbour "$neighbour" --neighbour-count "$A_N")
    kill -TERM "$server" "$sink"
    wait "$server" "$sink" 2>/dev/null || true
    rates_of[$neighbour]+=" $(echo "$result" | sed 's/.*"e2e_per_s":\([0-9.]*\).*/\1/')"
}

for ((round = 1; round <= ROUNDS; round++)); do
    for neighbour in none silent down; do run "$neighbour" "$round"; done
done
mean() { awk '{ s = 0; for (i = 1; i <= NF; i++) s += $i; printf "%.0f", s / NF }' <<<"$1"; }

echo
echo "N = $N messages for B, $A_N waiting for A; $(nproc) cores: $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
printf '%-10s %12s %12s   %s\n' "A's server" "B e2e msg/s" "vs A absent" "rounds"
base=$(mean "${rates_of[none]}")
for neighbour in none silent down; do
    rate=$(mean "${rates_of[$neighbour]}")
    printf '%-10s %12s %11.1f%%  %s\n' "$neighbour" "$rate" \
        "$(awk -v r="$rate" -v b="$base" 'BEGIN { print (r / b - 1) * 100 }')" \
        "$(printf '%.0f ' ${rates_of[$neighbour]})"
done
