#!/usr/bin/env bash
# Runs govulncheck on ./... against a vulnerability database built on this
# machine. These machines reach the Go module proxy but not Go's hosted vulnerability database, so
# the database comes from the module golang.org/x/vulndb (its data/osv holds
# every report as OSV JSON) and its cmd/indexdb writes the v1 database that
# `govulncheck -db file://…` reads.
#
# Everything is cached under .tools/: the two commands in .tools/bin, the
# database in .tools/vulndb/<vulndb version>. The first run downloads the
# vulndb module (about 70 MB unpacked) and builds both commands; later runs
# only resolve VULNDB_VERSION (one proxy request) and run govulncheck.
#
#   VULNDB_VERSION   version of golang.org/x/vulndb (default: latest, so that
#                    new reports are seen; pin a pseudo-version to reproduce
#                    an old result)
#   GOVULNCHECK_VERSION  version of golang.org/x/vuln (default below)
#
# Exit status: govulncheck's, so 3 when a vulnerability is reachable.
set -euo pipefail
export GOTOOLCHAIN=${GOTOOLCHAIN:-go1.27.3}
cd "$(dirname "$0")/.."
root=$PWD
bin=$root/.tools/bin
GOVULNCHECK_VERSION=${GOVULNCHECK_VERSION:-v1.3.0}
VULNDB_VERSION=${VULNDB_VERSION:-latest}
mkdir -p "$bin"

# Resolve "latest" to the pseudo-version, which names the cache.
version=$(cd /tmp && go list -m -f '{{.Version}}' "golang.org/x/vulndb@$VULNDB_VERSION")
db=$root/.tools/vulndb/$version

if [ ! -x "$bin/govulncheck" ] || ! "$bin/govulncheck" -version 2>/dev/null | grep -q "govulncheck@$GOVULNCHECK_VERSION"; then
	echo "building govulncheck $GOVULNCHECK_VERSION into .tools/bin" >&2
	GOBIN=$bin go install "golang.org/x/vuln/cmd/govulncheck@$GOVULNCHECK_VERSION"
fi

if [ ! -f "$db/index/db.json" ]; then
	echo "building the vulnerability database of golang.org/x/vulndb@$version into ${db#"$root"/}" >&2
	GOBIN=$bin go install "golang.org/x/vulndb/cmd/indexdb@$version"
	src=$(cd /tmp && go mod download -json "golang.org/x/vulndb@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	# Written aside and moved in whole, so that an interrupted build is
	# never taken for a database.
	tmp=$(mktemp -d "$root/.tools/vulndb.tmp.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	"$bin/indexdb" -vulns "$src/data/osv" -out "$tmp/db"
	mkdir -p "$(dirname "$db")"
	rm -rf "$db"
	mv "$tmp/db" "$db"
	rm -rf "$tmp"
	trap - EXIT
	# Older databases are of no further use.
	find "$root/.tools/vulndb" -mindepth 1 -maxdepth 1 ! -name "$version" -exec rm -rf {} +
fi

echo "govulncheck $GOVULNCHECK_VERSION, database golang.org/x/vulndb@$version, $(go version | cut -d' ' -f3)" >&2
exec "$bin/govulncheck" -db "file://$db" "$@" ./...
