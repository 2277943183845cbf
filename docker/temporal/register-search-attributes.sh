#!/bin/sh
# Registers the platform's custom search attributes with the Temporal server; run once by the compose stack's
# temporal-setup service (temporalio/admin-tools, POSIX sh). Idempotent: attributes already registered with the same
# type are left alone, so the service can run on every `docker-compose up`.
#
#   TEMPORAL_ADDRESS       host:port of the frontend (temporal:7233)
#   TEMPORAL_NAMESPACE     namespace to register them in (auto-setup creates it as DEFAULT_NAMESPACE)
#   SEARCH_ATTRIBUTES      space-separated name=Type pairs; must match SEARCH_ATTRIBUTE_TYPES in core/constants.ts
#   SETUP_TIMEOUT_SECONDS  how long to wait for the server and the namespace (default 300)
set -eu

: "${TEMPORAL_ADDRESS:?TEMPORAL_ADDRESS must be set (host:port of the Temporal frontend)}"
: "${TEMPORAL_NAMESPACE:=default}"
: "${SEARCH_ATTRIBUTES:?SEARCH_ATTRIBUTES must list name=Type pairs}"
: "${SETUP_TIMEOUT_SECONDS:=300}"

log() { echo "temporal-setup: $*"; }

deadline=$(($(date +%s) + SETUP_TIMEOUT_SECONDS))

# -w: NOT_SERVING must not count as SERVING.
server_serving() { temporal operator cluster health --address "$TEMPORAL_ADDRESS" 2>/dev/null | grep -qw SERVING; }
namespace_exists() {
  temporal operator namespace describe --address "$TEMPORAL_ADDRESS" "$TEMPORAL_NAMESPACE" >/dev/null 2>&1
}
list_attributes() {
  temporal operator search-attribute list --address "$TEMPORAL_ADDRESS" --namespace "$TEMPORAL_NAMESPACE"
}
# True when the listing has a line naming the attribute (whole word: pipeline is not pipelineStatus) with its type.
is_registered() { list_attributes 2>/dev/null | grep -w -- "$1" | grep -qiw -- "$2"; }

wait_for() {
  what=$1
  shift
  until "$@"; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log "gave up after ${SETUP_TIMEOUT_SECONDS}s waiting for $what" >&2
      exit 1
    fi
    log "waiting for $what"
    sleep 2
  done
}

for pair in $SEARCH_ATTRIBUTES; do
  case $pair in
    ?*=?*) ;;
    *)
      log "malformed SEARCH_ATTRIBUTES entry '$pair' (expected name=Type)" >&2
      exit 1
      ;;
  esac
done

# auto-setup creates the namespace in the background after the frontend answers, so wait for both.
wait_for "the Temporal frontend at $TEMPORAL_ADDRESS" server_serving
wait_for "namespace $TEMPORAL_NAMESPACE" namespace_exists

for pair in $SEARCH_ATTRIBUTES; do
  name=${pair%%=*}
  type=${pair#*=}
  if is_registered "$name" "$type"; then
    log "$name ($type) already registered"
    continue
  fi
  log "registering $name ($type) in namespace $TEMPORAL_NAMESPACE"
  if ! temporal operator search-attribute create --address "$TEMPORAL_ADDRESS" --namespace "$TEMPORAL_NAMESPACE" \
    --name "$name" --type "$type"; then
    # A concurrent run may have registered it between the listing and the create: only its absence is an error.
    is_registered "$name" "$type" || {
      log "could not register $name ($type); registered attributes:" >&2
      list_attributes >&2 || true
      exit 1
    }
  fi
done

log "search attributes registered: $SEARCH_ATTRIBUTES"
