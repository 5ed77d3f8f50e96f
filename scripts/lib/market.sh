# A local market for the scripts that run one (scripts/demo, scripts/dashboard-e2e):
# a chain and nodes started from the built binaries, their logs in $WORK, torn down on
# exit. The caller sets NODE, DEVNET, WORK, KEEP, PIDS and PROVIDER_ID.
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
    printf '\n%s failed; logs are in %s\n' "$(basename "$0")" "$WORK" >&2
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

# start_market [DEVNET_ARGS...] — a local chain with the contracts (orien-devnet, given
# DEVNET_ARGS), a bootstrap node, a provider selling configs/provider.example.toml and
# a renter with 10 USDC. Sets <NAME>_API, <NAME>_TOKEN, PROVIDER_ID and the chain's
# ORIEN_CHAIN_* variables.
start_market() {
  for name in bootstrap provider renter; do
    "$NODE" --data-dir "$WORK/$name" init >/dev/null
  done
  RENTER_WALLET=$("$NODE" --data-dir "$WORK/renter" wallet address)
  PROVIDER_WALLET=$("$NODE" --data-dir "$WORK/provider" wallet address)
  "$DEVNET" up --env-file "$WORK/chain.env" --fund "$RENTER_WALLET=10" --fund "$PROVIDER_WALLET=0" "$@" \
    >"$WORK/devnet.log" 2>&1 &
  PIDS+=($!)
  wait_for_line "$WORK/devnet.log" '^devnet ready' 60 >/dev/null
  set -a
  # shellcheck disable=SC1091
  source "$WORK/chain.env"
  set +a
  info "chain $ORIEN_CHAIN_ID at $ORIEN_CHAIN_RPC, escrow $ORIEN_ESCROW"

  start_node bootstrap
  BOOTSTRAP_ADDR=$(wait_for_line "$WORK/bootstrap.out" '^listening on ' 10 | sed 's/^listening on //')
  chain_args=(--chain-rpc "$ORIEN_CHAIN_RPC" --chain-id "$ORIEN_CHAIN_ID" --escrow "$ORIEN_ESCROW")
  start_node provider --bootstrap "$BOOTSTRAP_ADDR" --provider-config configs/provider.example.toml \
    --receipt-interval-ms 1000 --settle-every-secs 0 "${chain_args[@]}"
  start_node renter --bootstrap "$BOOTSTRAP_ADDR" "${chain_args[@]}"
  PROVIDER_ID=$("$NODE" --data-dir "$WORK/provider" id)
}
