#!/usr/bin/env bash
# Installs Debian's PostgreSQL server when missing (tests start their own
# throwaway cluster on 127.0.0.1; nothing is configured system-wide).
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then exit 0; fi
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
