#!/bin/sh
# herd-engine-k8s: the engine's entrypoint in a StatefulSet pod (installed in
# the image as /usr/local/bin/herd-engine-k8s).
#
# Every pod of a StatefulSet has the same template, so per-engine secrets cannot
# be picked by name in the manifest. The pod's name (HERD_ENGINE_ID, from the
# downward API) picks them here instead:
#   HERD_GATEWAY_TOKEN <- $HERD_TOKENS_DIR/$HERD_ENGINE_ID    (required)
#   DATABASE_URL       <- $HERD_DATABASE_DIR/$HERD_ENGINE_ID  (if that Secret is
#                         mounted and has any key; then this engine's is required)
# then it execs herd-engine with the given arguments (PID 1 gets SIGTERM).
set -eu

die() {
    echo "herd-engine-k8s: $*" >&2
    exit 78 # EX_CONFIG
}

id="${HERD_ENGINE_ID:-}"
[ -n "$id" ] || die "HERD_ENGINE_ID is not set (the StatefulSet sets it to the pod's name)"
case "$id" in
    *[!A-Za-z0-9_-]*) die "HERD_ENGINE_ID '$id' must be [A-Za-z0-9_-]" ;;
esac

tokens="${HERD_TOKENS_DIR:-/etc/herd/engine-tokens}"
database="${HERD_DATABASE_DIR:-/etc/herd/database}"
engine="${HERD_ENGINE_BIN:-/usr/local/bin/herd-engine}"

[ -r "$tokens/$id" ] ||
    die "no gateway token for engine '$id': add the key '$id' to the Secret herd-engine-tokens (and an [[engines]] entry with id = \"$id\" to the gateway's config)"
HERD_GATEWAY_TOKEN="$(cat "$tokens/$id")"
[ -n "$HERD_GATEWAY_TOKEN" ] || die "the gateway token for engine '$id' is empty"
export HERD_GATEWAY_TOKEN

if [ -d "$database" ]; then
    # Any visible entry means the Secret exists (kubelet's own entries start with "..").
    for entry in "$database"/*; do
        [ -e "$entry" ] || continue
        [ -r "$database/$id" ] ||
            die "the Secret herd-engine-database has no key '$id': add this engine's postgres:// URL (one database per engine)"
        DATABASE_URL="$(cat "$database/$id")"
        [ -n "$DATABASE_URL" ] || die "the database URL for engine '$id' is empty"
        export DATABASE_URL
        break
    done
fi

exec "$engine" "$@"
