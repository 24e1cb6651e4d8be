#!/usr/bin/env bash
# Installs what the interop tests in peers/interop need and the machine
# lacks: Debian's Chromium and Python websockets, and the npm packages of
# package-lock.json (ws, playwright-core). Safe to run again: it installs
# nothing that is already there.
set -euo pipefail
export GOTOOLCHAIN=${GOTOOLCHAIN:-go1.27.3}
cd "$(dirname "$0")"

missing=()
for pkg in python3-websockets chromium; do
	if ! dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed'; then
		missing+=("$pkg")
	fi
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "setup: installing ${missing[*]}"
	sudo=()
	if [ "$(id -u)" -ne 0 ]; then
		sudo=(sudo)
	fi
	"${sudo[@]}" apt-get update -q
	DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends python3-websockets chromium
fi

# npm ci when node_modules is missing or older than the lockfile; npm writes
# node_modules/.package-lock.json on every install.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
	echo "setup: npm ci"
	npm ci --no-audit --no-fund
fi
