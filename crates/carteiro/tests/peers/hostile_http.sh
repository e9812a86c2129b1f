#!/usr/bin/env bash
# Hostile HTTP input for carteiro's API: schemathesis reads the OpenAPI document
# and sends what it describes and what it does not (wrong types, missing and
# unknown fields, odd bytes, other methods, no credential), then checks every
# answer. Exits non-zero on any failure, its report on standard output.
#
#   hostile_http.sh BASE_URL ADMIN_TOKEN API_KEY
#
# BASE_URL is carteiro's (http://127.0.0.1:PORT). The company of API_KEY should
# have a server to send to, so that valid submissions are queued and sent.
# PYTHON is the interpreter that has schemathesis (default: the test venv).
set -euo pipefail
base=$1 admin_token=$2 api_key=$3
python=${PYTHON:-$(dirname "$0")/../../../../.venv-test/bin/python}

# Every check but the two that judge the document's value rules: it types
# values loosely on purpose (carteiro's 422 names the rule a value breaks), and
# a batch judges each message alone (202, with that message's error in place).
checks=(--checks all --exclude-checks positive_data_acceptance,negative_data_rejection)
# Bounded and reproducible: a fixed seed, one worker, no example database kept.
bounds=(--phases examples,coverage,fuzzing,stateful --max-examples 40 --seed 20261126 --workers 1
    --generation-database none --no-color)

run() {
    "$python" -m schemathesis.cli run "$base/api/v1/openapi.json" "${checks[@]}" "${bounds[@]}" "$@"
}

# The sending routes first, with the company's key: the administration run
# may revoke any key it comes across (DELETE …/api-keys/{id}), this one too.
run --include-tag sending -H "Authorization: Bearer $api_key"
run --exclude-tag sending -H "Authorization: Bearer $admin_token"
