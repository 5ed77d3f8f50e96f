# The browser the dashboard's tests drive: Debian's chromium, through the pinned npm
# playwright-core (package.json); axe-core for the accessibility scans.
# shellcheck shell=bash

# ensure_browser — chromium from Debian and the pinned node packages.
ensure_browser() {
  ensure_apt chromium
  ensure_node_packages
  [ -x /usr/bin/chromium ] || die "chromium is installed but /usr/bin/chromium is missing"
}
