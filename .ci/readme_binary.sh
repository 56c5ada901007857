#!/usr/bin/env bash
# Runs the commands of the README's "The binary" block as written (those without a <placeholder>
# and other than the ones that serve until stopped: the bare worker and `ui`) on a fresh SQLite
# file, and fails if one fails. Usage: .ci/readme_binary.sh PATH_TO_WORKFLOW_WORKER (run from the repository root).
set -euo pipefail
bin=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/bin"
ln -s "$(realpath "$bin")" "$dir/bin/workflow-worker"
export PATH="$dir/bin:$PATH" DATABASE_URL="sqlite://$dir/readme.db"
unset SUPABASE_DB_URL
ran=0
while IFS= read -r line; do
    command=${line%%  #*}
    command=${command%"${command##*[![:space:]]}"}
    case "$command" in
        "workflow-worker" | "workflow-worker ui "* | *"<"*) continue ;;
        workflow-worker\ *) ;;
        *) continue ;;
    esac
    echo "\$ $command"
    eval "$command"
    ran=$((ran + 1))
done < <(sed -n '/^## The binary/,/^```$/p' README.md | sed -n '/^```sh$/,/^```$/p')
[ "$ran" -ge 4 ] || { echo "found only $ran commands in the README's binary block" >&2; exit 1; }
echo "README: $ran commands of the binary block ran"
