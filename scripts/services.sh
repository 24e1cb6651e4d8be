#!/usr/bin/env bash
# Installs the servers that the broker and multi-node tests start by
# themselves on free loopback ports: Debian's redis-server and redis-cli, and
# nats-server built from its Go module at the version pinned here (Debian's
# is too old for JetStream's per-key TTL). Safe to run again: it installs
# nothing that is already there.
set -euo pipefail
export GOTOOLCHAIN=${GOTOOLCHAIN:-go1.27.3}
cd "$(dirname "$0")/.."

NATS_SERVER_VERSION=v2.15.3

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
	echo "services: installing redis-server redis-tools"
	sudo=()
	if [ "$(id -u)" -ne 0 ]; then
		sudo=(sudo)
	fi
	"${sudo[@]}" apt-get update -q
	DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends redis-server redis-tools
fi

bin=$PWD/.tools/bin
if ! "$bin/nats-server" --version 2>/dev/null | grep -q "${NATS_SERVER_VERSION#v}"; then
	echo "services: building nats-server $NATS_SERVER_VERSION"
	GOBIN=$bin go install "github.com/nats-io/nats-server/v2@$NATS_SERVER_VERSION"
fi
