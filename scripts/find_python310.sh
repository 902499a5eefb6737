#!/usr/bin/env bash
# Print the path of a Python 3.10 interpreter (Rasa 3.6 runs on 3.8-3.10 only):
# python3.10 on PATH first, then any 3.10 that pyenv has installed.
set -u
is310() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' >/dev/null 2>&1; }

if command -v python3.10 >/dev/null 2>&1 && is310 python3.10; then
  command -v python3.10; exit 0
fi
if command -v pyenv >/dev/null 2>&1; then
  for candidate in "$(pyenv root)"/versions/3.10.*/bin/python3.10; do
    if [ -x "$candidate" ] && is310 "$candidate"; then echo "$candidate"; exit 0; fi
  done
fi
echo "error: Python 3.10 not found (install it, e.g. 'pyenv install 3.10.13')" >&2
exit 1
