#!/usr/bin/env bash
# Black-box tests of the gatehouse binary: grpcio with stubs generated from our .proto
# files, and Connect over plain HTTP and HTTPS. Creates tests/py/.venv on first use.
#
#   bash tests/py/run.sh [pytest args...]
#
# GATEHOUSE_BIN selects the binary (default: target/debug/gatehouse).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$here/.venv"

# The TLS tests make their certificates with the openssl command.
if ! command -v openssl >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null
fi
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"

cd "$root"
set +e
"$venv/bin/python" -m pytest -q tests/py "$@"
exit $?
