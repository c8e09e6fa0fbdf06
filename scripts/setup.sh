#!/usr/bin/env bash
# Creates a virtual environment inside the project and installs requirements.txt and
# the Fashion-MNIST Debian package when they are missing. Idempotent and quiet when
# everything is already there.
#   bash scripts/setup.sh                              # .venv with a supported Python
#   PYTHON_VERSION=3.12 VENV=.venv-3.12 bash scripts/setup.sh   # a given version
#   PYTHON=/path/to/python3.13 VENV=.venv-3.13 bash scripts/setup.sh
# Supported Pythons: 3.11 (preferred), 3.12, 3.13 - the versions the pinned
# TensorFlow 2.21 stack installs on and the suite is run on (`make test-pythons`).
set -euo pipefail
cd "$(dirname "$0")/.."

SUPPORTED="3.11 3.12 3.13"
if [ -n "${PYTHON_VERSION:-}" ]; then
  if [[ " $SUPPORTED " != *" $PYTHON_VERSION "* ]]; then
    echo "PYTHON_VERSION=$PYTHON_VERSION is not supported ($SUPPORTED)." >&2
    exit 1
  fi
  SUPPORTED=$PYTHON_VERSION
fi
VENV=${VENV:-.venv}

supported() {  # prints the version of Python "$1" when it runs and is supported
  local version
  version=$("$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || return 1
  [[ " $SUPPORTED " == *" $version "* ]] && echo "$version"
}

find_python() {  # the first supported Python present: PATH, then pyenv's versions
  local v candidate
  for v in $SUPPORTED; do
    for candidate in "python$v" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$v".*/bin/"python$v"; do
      if supported "$candidate" >/dev/null; then echo "$candidate"; return 0; fi
    done
  done
  supported python3 >/dev/null && echo python3 && return 0
  return 1
}

if [ ! -x "$VENV/bin/python" ]; then
  if [ -n "${PYTHON:-}" ]; then
    if ! supported "$PYTHON" >/dev/null; then
      echo "PYTHON=$PYTHON is not a supported Python ($SUPPORTED)." >&2
      exit 1
    fi
  elif ! PYTHON=$(find_python); then
    echo "No supported Python found ($SUPPORTED, on PATH or under pyenv)." \
      "Install one, or set PYTHON=/path/to/python3.11." >&2
    exit 1
  fi
  echo "Creating $VENV with Python $(supported "$PYTHON") ($PYTHON)"
  "$PYTHON" -m venv "$VENV"
elif ! supported "$VENV/bin/python" >/dev/null; then
  echo "$VENV uses an unsupported Python; remove it and re-run (supported: $SUPPORTED)." >&2
  exit 1
fi

stamp=$VENV/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "Installing requirements.txt into $VENV (a few minutes the first time)"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -r requirements.txt
  echo "$want" > "$stamp"
fi

if [ ! -e /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ] \
   && [ ! -e /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte ]; then
  echo "Installing the Debian package dataset-fashion-mnist"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist
fi
