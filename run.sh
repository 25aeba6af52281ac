#!/usr/bin/env bash
# ttsadapt in one command. Installs what the project needs, then runs the job:
#   ./run.sh            install, run the embedded default suite benchmarks/quick.toml, print the leaderboard path
#   ./run.sh test       install, then ruff (lint + format check) and the whole test suite
#   ./run.sh bench      install, then the performance benchmarks in benchmarks/perf
#   ./run.sh install    install only
# Installs: Debian packages (espeak-ng, chromium, sox, real-speech test data) when run as root or
# with sudo; a virtual environment in .venv; PyTorch 2.13.0 CPU unless a GPU is present (then pip's
# default CUDA build) or torch is already importable; the project with its dev extras.
set -euo pipefail
cd "$(dirname "$0")"
job="${1:-quick}"
shift || true
PY="${PYTHON:-python3}"
VENV="${TTSADAPT_VENV:-.venv}"
case "$VENV" in /*) ;; *) VENV="$PWD/$VENV" ;; esac
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
export TOKENIZERS_PARALLELISM=false

apt_packages=(espeak-ng flite festival festvox-kallpc16k chromium sox pocketsphinx-testdata codec2-examples fortunes-min fortunes)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "[run.sh] installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "[run.sh] creating virtual environment $VENV"
  "$PY" -m venv ${TTSADAPT_SYSTEM_SITE_PACKAGES:+--system-site-packages} "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
fi
if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    echo "[run.sh] GPU found: installing pip's default (CUDA) torch"
    "$VENV/bin/pip" install -q "torch>=2.4"
  else
    echo "[run.sh] installing PyTorch 2.13.0 (CPU build)"
    "$VENV/bin/pip" install -q "torch==2.13.0" || "$VENV/bin/pip" install -q "torch>=2.4"
  fi
fi
stamp="$VENV/.ttsadapt-install"
want="$(cat pyproject.toml | sha256sum | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[run.sh] installing ttsadapt and its dependencies"
  "$VENV/bin/pip" install -q -e ".[dev]"
  # voxcpm declares heavy dependencies it does not need for its model classes (gradio, funasr,
  # modelscope, torchaudio...); install the package itself without them (see plugins/backbones).
  "$VENV/bin/pip" install -q --no-deps "voxcpm>=2.0"
  echo "$want" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"

case "$job" in
  install)
    echo "[run.sh] installed: $("$VENV/bin/ttsadapt" --version)" ;;
  quick)
    ttsadapt run benchmarks/quick.toml "$@" ;;
  test)
    ruff check .
    ruff format --check .
    python -m pytest -q "$@" ;;
  bench)
    python -m pytest benchmarks/perf --benchmark-enable --benchmark-columns=min,mean,max,rounds -p no:cacheprovider "$@" ;;
  *)
    echo "usage: ./run.sh [quick|test|bench|install] [extra args]" >&2; exit 2 ;;
esac
