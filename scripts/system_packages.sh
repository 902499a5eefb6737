#!/usr/bin/env bash
# Debian packages the checks and the benchmark start on 127.0.0.1 themselves (never as
# system services): PostgreSQL, Redis and nginx; chromium and a CJK font for the browser
# tests; npm for the website widget (rasa-webchat, installed into web/node_modules). Installs
# only what is missing; needs root (or sudo) the first time. `make test` and `make bench`
# call it, so a fresh machine needs nothing installed by hand.
set -euo pipefail
missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || missing+=(redis-server)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ "${1:-}" != "--no-browser" ]; then
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  fc-list 2>/dev/null | grep -qi "wqy\|noto sans cjk" || missing+=(fonts-wqy-zenhei)
fi
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    # Non-interactive sudo only: `make test` in CI has no terminal to ask for a password.
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      sudo="sudo"
    else
      echo "The checks need these Debian packages: ${missing[*]}." >&2
      echo "Install them as root (apt-get install ${missing[*]}), or run as root or with" >&2
      echo "password-less sudo, then run the command again." >&2
      exit 1
    fi
  fi
  echo "installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
