#!/usr/bin/env bash
# Runs the Python tests of the SQL API (tests/python) against a fresh PostgreSQL database:
#
#   bash tests/python/run.sh target/debug/workflow-worker
#
# Creates a database named wfw_py_<random> on the server in DATABASE_URL (default
# postgres://postgres@127.0.0.1:5432/test), migrates it with the given workflow-worker binary,
# installs tests/python/requirements.txt into a virtual environment under target/py-venv
# (once), runs pytest, drops the database, and exits with pytest's status.
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 PATH_TO_WORKFLOW_WORKER_BINARY" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
if [ ! -x "$bin" ]; then
    echo "$0: $1 is not an executable workflow-worker binary" >&2
    exit 2
fi

server_url="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
# The same server, another database: replace the path (keeping any ?query).
base="${server_url%%\?*}"
query=""
case "$server_url" in *\?*) query="?${server_url#*\?}" ;; esac
authority="${base#*://}"
authority="${authority%%/*}"
database="wfw_py_$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
test_url="${base%%://*}://${authority}/${database}${query}"

psql -v ON_ERROR_STOP=1 -qX -d "$server_url" -c "create database ${database}"
cleanup() {
    # Ends sessions left behind (a killed worker's) so the drop cannot fail on them.
    psql -qX -d "$server_url" \
        -c "select pg_terminate_backend(pid) from pg_stat_activity where datname = '${database}'" \
        -c "drop database if exists ${database}" >/dev/null || true
}
trap cleanup EXIT

DATABASE_URL="$test_url" "$bin" migrate

# The virtual environment, made once. Debian ships venv apart from python3 (python3-venv).
venv="$root/target/py-venv"
if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
    rm -rf "$venv"
    if ! python3 -m venv "$venv"; then
        echo "python3 -m venv failed; installing python3-venv" >&2
        rm -rf "$venv"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
        python3 -m venv "$venv"
    fi
fi
# Quick when the pinned versions are already installed.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"

status=0
# No __pycache__ or .pytest_cache in the work tree.
DATABASE_URL="$test_url" WORKFLOW_WORKER_BIN="$bin" PYTHONDONTWRITEBYTECODE=1 \
    "$venv/bin/python" -m pytest -q -p no:cacheprovider "$here" || status=$?
exit "$status"
