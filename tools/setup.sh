#!/usr/bin/env bash
# Sets up everything `make train` / `make test` need on a fresh Debian machine, and returns in
# seconds when it is already there:
#   1. a virtual environment in .venv (python3 -m venv; installs python3-venv with apt if missing),
#   2. miniai and its dev dependencies, installed with constraints.txt pinning torch==2.13.0
#      (an unpinned torch would pull several GB of CUDA wheels),
#   3. Fashion-MNIST from Debian's dataset-fashion-mnist package (apt-get, when root and apt exist).
# Re-installs only when settings.ini, setup.py or constraints.txt changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
DATA_DIR=/usr/share/datasets/fashion-mnist
say() { echo "setup: $*"; }
can_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }
apt_install() {
  # apt-get update once per run, only when we actually need a package.
  if [ -z "${_APT_UPDATED:-}" ]; then apt-get update -qq >/dev/null 2>&1 || true; _APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

PY=${PYTHON:-python3}
if ! command -v "$PY" >/dev/null 2>&1; then
  echo "setup: $PY not found. Install Python 3.10+ (Debian: apt-get install python3 python3-venv)." >&2; exit 1
fi

if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  if ! "$PY" -m venv "$VENV" 2>/dev/null; then
    rm -rf "$VENV"
    if can_apt; then
      say "python3 -m venv failed; installing python3-venv with apt-get"
      apt_install python3-venv
      "$PY" -m venv "$VENV"
    else
      echo "setup: '$PY -m venv' failed. Install the venv module (Debian: sudo apt-get install python3-venv) and re-run." >&2
      exit 1
    fi
  fi
fi

stamp="$VENV/.miniai-installed"
venv_py="$(cd "$VENV" && pwd)/bin/python"
want=$(cat settings.ini setup.py constraints.txt | md5sum | cut -d' ' -f1)
# Also reinstall when a required distribution is missing or miniai's modules cannot be found from outside the tree (an
# editable install made before miniai/ had any modules maps nothing). tools/installed.py asks without importing torch.
installed_py="$(pwd)/tools/installed.py" settings="$(pwd)/settings.ini"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! (cd / && "$venv_py" "$installed_py" "$settings"); then
  say "installing miniai and dev dependencies into $VENV (torch pinned by constraints.txt)"
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  # --no-compile: pip byte-compiles every file of every package, about 60% of the install (113 s against 48 s here);
  # most of those files are never imported. The modules miniai and its tests do import are compiled next, once.
  "$VENV/bin/python" -m pip install -q --no-compile -c constraints.txt -e '.[dev]'
  # Imports of what miniai, its notebooks and its tests load, with .pyc writing on (PYTHONDONTWRITEBYTECODE is set on
  # this project's machines): without the .pyc files every process would compile torch again (imports 7-9 s instead
  # of 3), and the parallel test workers would each compile the same files. Two processes, one per core (18 s, not 28).
  say "byte-compiling the modules miniai imports"
  warm() { (cd / && env -u PYTHONDONTWRITEBYTECODE "$venv_py" -c "import $(echo $1)"); }  # echo: one line
  warm "torch, torch.utils.tensorboard, torch.distributed.run, accelerate, safetensors.torch, torcheval.metrics,
        pytorch_accelerated, pytorch_optimizer, miniai.all, miniai.cli" & torch_side=$!
  warm "datasets, matplotlib.pyplot, fastprogress.fastprogress, fastcore.all, psutil, xxhash, nbdev, nbdev.test,
        execnb.shell, nbclient, nbconvert, ipykernel.kernelapp, pytest, xdist, hypothesis,
        tensorboard.backend.event_processing.event_accumulator"
  wait $torch_side
  # The notebook kernel nbdev-test and the notebook runner use.
  "$VENV/bin/python" -m ipykernel install --sys-prefix --name python3 >/dev/null 2>&1 || true
  echo "$want" > "$stamp"
else
  say "$VENV is up to date"
fi

if [ -z "${MINIAI_DATA:-}" ] && [ ! -f "$DATA_DIR/train-images-idx3-ubyte.gz" ]; then
  if can_apt; then
    say "installing Fashion-MNIST (Debian package dataset-fashion-mnist)"
    apt_install dataset-fashion-mnist || true
  fi
  if [ ! -f "$DATA_DIR/train-images-idx3-ubyte.gz" ]; then
    cat >&2 <<MSG
setup: Fashion-MNIST is not installed and could not be installed here.
  Either install Debian's package as root:   apt-get install dataset-fashion-mnist
  or put the four IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
  t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) in a folder and set MINIAI_DATA to it,
  or go online: miniai then downloads zalando-datasets/fashion_mnist from the HF hub.
MSG
    [ "${MINIAI_REQUIRE_DATA:-1}" = 1 ] && exit 1
  fi
fi
