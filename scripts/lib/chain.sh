# Chain tooling: the pinned npm packages of package.json (solc, OpenZeppelin contracts,
# Foundry's anvil and cast) and the checks of the committed contract artifacts.
# shellcheck shell=bash

# ensure_node_packages — installs node_modules from package-lock.json with `npm ci`, but
# only when node_modules is missing or older than the lock file, so it is instant when
# nothing changed. Needs Debian's nodejs and npm.
ensure_node_packages() {
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || ensure_apt nodejs npm
  local lock="$ORIEN_ROOT/package-lock.json" stamp="$ORIEN_ROOT/node_modules/.package-lock.json"
  [ -f "$lock" ] || die "package-lock.json is missing at $ORIEN_ROOT"
  # npm writes node_modules/.package-lock.json on every install; a copy that differs from
  # the lock file means node_modules is stale.
  if [ -f "$stamp" ] && [ -x "$(anvil_path_unchecked)" ] && node_lock_matches "$lock" "$stamp"; then
    return 0
  fi
  info "installing pinned node packages (npm ci)"
  (cd "$ORIEN_ROOT" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) \
    || die "npm ci failed in $ORIEN_ROOT; check network access to registry.npmjs.org"
}

# node_lock_matches LOCK STAMP — true when every package pinned in LOCK is installed at
# the same version and integrity (npm's hidden lock in node_modules records what is there).
node_lock_matches() {
  node -e '
    const [lock, stamp] = process.argv.slice(1).map((f) => JSON.parse(require("fs").readFileSync(f, "utf8")).packages);
    for (const [path, pkg] of Object.entries(lock)) {
      if (path === "") continue;
      const got = stamp[path];
      if (!got || got.version !== pkg.version || got.integrity !== pkg.integrity) process.exit(1);
    }' "$1" "$2"
}

anvil_path_unchecked() {
  printf '%s\n' "$ORIEN_ROOT/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
}

# anvil_path — prints the path of the pinned anvil binary (after ensure_node_packages).
# Tests find it through the ORIEN_ANVIL environment variable or this same location.
anvil_path() {
  local path
  path=$(anvil_path_unchecked)
  [ -x "$path" ] || die "anvil not found at $path; run ensure_node_packages (scripts/test does)"
  printf '%s\n' "$path"
}

# cast_path — prints the path of the pinned cast binary (after ensure_node_packages).
cast_path() {
  local path="$ORIEN_ROOT/node_modules/@foundry-rs/cast-linux-amd64/bin/cast"
  [ -x "$path" ] || die "cast not found at $path; run ensure_node_packages (scripts/test does)"
  printf '%s\n' "$path"
}

# check_contract_artifacts — fails when ledger/contracts/out no longer matches what the
# pinned solc compiles from ledger/contracts/src.
check_contract_artifacts() {
  node "$ORIEN_ROOT/ledger/contracts/build.js" --check \
    || die "contract artifacts are stale: run 'node ledger/contracts/build.js' and commit ledger/contracts/out"
}
