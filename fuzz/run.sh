#!/usr/bin/env bash
# Runs every fuzz target for a while (default 180 s each), then keeps the
# corpus minimal. On the stable toolchain, without sanitizers: Rust's own
# checks (bounds, overflow in debug assertions) and the targets' assertions
# are what find bugs.
#
#   fuzz/run.sh                 every target, 180 s each
#   fuzz/run.sh 600 mime_build  one target, 10 minutes
#
# A crash leaves its input in fuzz/artifacts/<target>/; reproduce it with
# `cargo fuzz run -s none <target> <file>` and make it a regression test.
set -euo pipefail
cd "$(dirname "$0")"

SECONDS_EACH=${1:-180}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(address settings_document message_document mime_build)

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz 0.13.2 from crates.io" >&2
    cargo install cargo-fuzz --version 0.13.2 --locked
fi

for target in "${TARGETS[@]}"; do
    echo "fuzz: $target for ${SECONDS_EACH} s" >&2
    cargo fuzz run -s none "$target" -- -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=4096
    cargo fuzz cmin -s none "$target"
done
