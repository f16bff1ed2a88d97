#!/usr/bin/env bash
# Runs the Python and TypeScript clients' tours (upsert with consent, lookup, search, watch)
# against a real daemon started here on 127.0.0.1 with a throwaway data directory.
#
#   clients/run-tours.sh            # from .ci/run, or by hand
#
# Each client's toolchain comes from its ecosystem's registry, pinned by the project's own
# files, into target/clients/ (nothing installed on the machine): a Python virtualenv from
# clients/python/requirements.txt (grpcio-tools carries its own protoc), and node_modules
# from clients/typescript/package-lock.json (npm ci). Both generate their code from proto/
# at build time. The daemon and vaultctl are this workspace's debug builds.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

log() { echo "run-tours: $*" >&2; }

cargo build --locked -q -p vault-server --bin vault-server --bin vaultctl
bin="$root/target/debug"

work=$(mktemp -d)
daemon_pid=
cleanup() {
    if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
        kill -TERM "$daemon_pid" 2>/dev/null || true
        wait "$daemon_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# The daemon, zero configuration but for the data directory and a free port.
(cd "$work" && exec "$bin/vault-server" --data-dir "$work/data" --listen 127.0.0.1:0) \
    2>"$work/daemon.log" &
daemon_pid=$!
addr=
for _ in $(seq 1 600); do
    addr=$(sed -n 's/.*listening on \(127\.0\.0\.1:[0-9]*\).*/\1/p' "$work/daemon.log" | head -1)
    [ -n "$addr" ] && break
    kill -0 "$daemon_pid" 2>/dev/null || { cat "$work/daemon.log" >&2; log "the daemon exited"; exit 1; }
    sleep 0.1
done
[ -n "$addr" ] || { cat "$work/daemon.log" >&2; log "the daemon did not start"; exit 1; }
log "daemon on $addr"

ctl() { "$bin/vaultctl" --addr "$addr" --data-dir "$work/data" "$@"; }
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

# A campaign tool with the newsletter purpose, through the two-admin flow the README shows.
alice=$(ctl client create --name alice --role admin | json '["token"]')
proposal=$(ctl admin propose-client --name client-tours --role campaign-tool \
    --purposes membership,newsletter)
proposal_id=$(echo "$proposal" | json '["proposal"]["id"]')
proposal_sha=$(echo "$proposal" | json '["proposal"]["change_sha256"]')
tool=$(echo "$proposal" | json '["token"]')
ctl --token "$alice" admin approve "$proposal_id" --sha256 "$proposal_sha" >/dev/null

# Python: a virtualenv with the pinned packages, the stubs generated from proto/.
venv="$root/target/clients/python-venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check -r clients/python/requirements.txt
"$venv/bin/python" clients/python/generate.py >&2
"$venv/bin/python" clients/python/examples/tour.py --addr "$addr" --token "$tool"

# TypeScript: node_modules as the lock file pins them, types generated from proto/, tsc.
ts_build="$root/target/clients/typescript"
mkdir -p "$ts_build"
cp clients/typescript/package.json clients/typescript/package-lock.json \
    clients/typescript/tsconfig.json "$ts_build/"
rm -rf "$ts_build/src" && cp -r clients/typescript/src "$ts_build/src"
(cd "$ts_build" && npm ci --no-audit --no-fund --loglevel=error >&2 \
    && PROTO_DIR="$root/proto" npm run --silent build >&2 \
    && PROTO_DIR="$root/proto" node dist/tour.js --addr "$addr" --token "$tool")

log "both tours passed"
