#!/usr/bin/env bash
# Installs Debian's OpenSSH server and client when missing (idempotent).
# The ssh runner's tests start their own throwaway sshd on 127.0.0.1 with a
# config, host key and authorized key in a temp dir; nothing is configured
# here. apt's chatter goes to a log that is shown only when it fails.
set -euo pipefail
if [ -x /usr/sbin/sshd ] && command -v ssh >/dev/null && command -v ssh-keygen >/dev/null; then
    exit 0
fi
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { $SUDO apt-get update -qq &&
       DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
           openssh-server openssh-client; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "install_sshd.sh: could not install openssh-server/openssh-client" >&2
    exit 1
fi
