#!/usr/bin/env bash
# Puts `promtool` and `prometheus` from Debian's `prometheus` package into .ort/prometheus/
# for the tests (promtool check/test rules; a real Prometheus loading the exported rules).
# The package is only unpacked, never installed: no service starts, no root needed unless
# the machine has no package lists yet.
set -euo pipefail
dest="$(cd "$(dirname "$0")/.." && pwd)/.ort/prometheus"
mkdir -p "$dest"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
# apt's sandbox user must be able to write here.
chmod 0777 "$work"
if ! apt-get download prometheus >/dev/null 2>&1; then
    echo "fetch_prometheus: no package lists yet; running apt-get update" >&2
    if [ "$(id -u)" = 0 ]; then apt-get update -qq; else sudo apt-get update -qq; fi
    apt-get download prometheus
fi
dpkg-deb -x prometheus_*.deb unpacked
install -m 0755 unpacked/usr/bin/promtool unpacked/usr/bin/prometheus "$dest/"
"$dest/promtool" --version | head -1
