#!/usr/bin/env bash
# Runs examples/embed_in_service like a user would: start it, create a greeting over its HTTP
# API, wait for the worker beside it to complete the execution, then stop both with SIGTERM.
# Usage: .ci/embed_in_service.sh PATH_TO_EXAMPLE_BINARY (run in the directory to use).
set -euo pipefail
example=$1
out=$(mktemp)
ADDR=127.0.0.1:0 "$example" >"$out" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; rm -f "$out"' EXIT

for _ in $(seq 100); do
    addr=$(sed -n 's|^listening on http://||p' "$out")
    [ -n "$addr" ] && break
    kill -0 "$pid" || { echo "embed_in_service exited before listening" >&2; exit 1; }
    sleep 0.2
done
[ -n "$addr" ] || { echo "embed_in_service never listened" >&2; exit 1; }

# The README's command, as written there, aimed at this run's address.
readme=$(dirname "$0")/../README.md
command=$(grep -o "curl -X POST localhost:3000/greetings[^\`]*" "$readme" | head -1)
[ -n "$command" ] || { echo "README.md has no curl -X POST localhost:3000/greetings command" >&2; exit 1; }
echo "README: $command"
created=$(eval "${command/localhost:3000/$addr} -sf")
id=$(printf '%s' "$created" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
[ -n "$id" ] || { echo "POST /greetings returned no id" >&2; exit 1; }
for _ in $(seq 100); do
    shown=$(curl -sf "http://$addr/greetings/$id")
    case "$shown" in *'"status":"completed"'*) break ;; esac
    sleep 0.1
done
echo "GET /greetings/$id: $shown"
case "$shown" in *'Hello, Ada!'*) ;; *) echo "the greeting did not complete" >&2; exit 1 ;; esac
status=$(curl -s -o /dev/null -w '%{http_code}' "http://$addr/greetings/not-an-id")
[ "$status" = 400 ] || { echo "GET with a bad id answered $status, not 400" >&2; exit 1; }

# One signal stops the server and the worker; the process exits cleanly.
kill -TERM "$pid"
wait "$pid"
grep -qx stopped "$out" || { echo "embed_in_service did not report stopping" >&2; exit 1; }
echo "embed_in_service: served, ran the greeting and stopped cleanly"
