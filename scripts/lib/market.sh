# A local market for the scripts that run one (scripts/demo): nodes started from the
# built orien-node, their logs in $WORK, torn down on exit. The caller sets NODE, WORK,
# KEEP, PIDS and PROVIDER_ID.
# shellcheck shell=bash

cleanup() {
  local status=$?
  if [ "$KEEP" -eq 1 ] && [ "$status" -eq 0 ]; then
    return
  fi
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  if [ -n "$PROVIDER_ID" ]; then
    docker ps -aq --filter "label=orien.node=$PROVIDER_ID" | xargs -r docker rm -f -v >/dev/null 2>&1 || true
    docker volume ls -q --filter "label=orien.node=$PROVIDER_ID" | xargs -r docker volume rm -f >/dev/null 2>&1 || true
  fi
  if [ "$status" -ne 0 ]; then
    printf '\nthe demo failed; logs are in %s\n' "$WORK" >&2
  else
    rm -rf "$WORK"
  fi
}

# wait_for_line FILE PATTERN SECONDS — the first line of FILE matching PATTERN.
wait_for_line() {
  local file=$1 pattern=$2 waited=0
  until grep -m1 -E "$pattern" "$file" 2>/dev/null; do
    [ "$waited" -ge $(($3 * 10)) ] && die "timed out waiting for /$pattern/ in $file"
    sleep 0.1
    waited=$((waited + 1))
  done
}

# start_node NAME ARGS... — runs a node; sets <NAME>_API and <NAME>_TOKEN.
start_node() {
  local name=$1
  shift
  "$NODE" --data-dir "$WORK/$name" run --listen /ip4/127.0.0.1/tcp/0 --api 127.0.0.1:0 "$@" \
    >"$WORK/$name.out" 2>"$WORK/$name.log" &
  PIDS+=($!)
  local api
  api=$(wait_for_line "$WORK/$name.out" '^API on ' 120 | sed 's/^API on //')
  printf -v "${name^^}_API" '%s' "$api"
  printf -v "${name^^}_TOKEN" '%s' "$(cat "$WORK/$name/api.token")"
}

# api NODE METHOD PATH [JSON] — an authenticated call; fails on a non-2xx answer.
api() {
  local node=${1^^} method=$2 path=$3 body=${4:-}
  local url_var="${node}_API" token_var="${node}_TOKEN"
  local args=(-sS --fail-with-body -X "$method" -H "Authorization: Bearer ${!token_var}")
  [ -n "$body" ] && args+=(-H 'content-type: application/json' --data "$body")
  curl "${args[@]}" "${!url_var}$path" || die "$node $method $path failed"
}
