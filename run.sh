#!/usr/bin/env bash
# ttsadapt in one command. Installs what the project needs, then runs the job:
#   ./run.sh            install, run the embedded default suite benchmarks/quick.toml, print the leaderboard path
#   ./run.sh test       install (with the test-only packages), then ruff (lint + format check),
#                       mypy (the type check of core/) and the whole test suite
#   ./run.sh bench      install, then the performance benchmarks in benchmarks/perf
#   ./run.sh install    install only
# Installs: Debian packages (speech engines, fortune texts, real-speech recordings; for test/bench
# also chromium and sox) when run as root or with sudo; a virtual environment in .venv; PyTorch
# unless torch is already importable there: on a machine without a GPU the CPU build torch==2.13.0
# from the PyTorch CPU index, with `nvidia-smi` present pip's default (CUDA) build; the project
# (with its dev extras for test/bench only); voxcpm without its unneeded dependencies.
# Settings: TTSADAPT_TORCH (the torch requirement, default torch==2.13.0 on CPU, torch>=2.4 on a
# GPU), TTSADAPT_TORCH_INDEX (the index it comes from, default https://download.pytorch.org/whl/cpu
# on CPU and pip's own on a GPU; e.g. https://download.pytorch.org/whl/cu128), PYTHON, TTSADAPT_VENV.
set -euo pipefail
cd "$(dirname "$0")"
job="${1:-quick}"
shift || true
PY="${PYTHON:-python3}"
VENV="${TTSADAPT_VENV:-.venv}"
case "$VENV" in /*) ;; *) VENV="$PWD/$VENV" ;; esac
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
export TOKENIZERS_PARALLELISM=false
VOXCPM="voxcpm==2.0.3"  # installed --no-deps: see plugins/backbones/voxcpm2/_import.py
KOKORO="kokoro==0.9.4"  # installed --no-deps: see plugins/backbones/kokoro/_import.py

# what ttsadapt uses: speech engines for the offline corpus, fortune texts for the reading
# corpus, real recordings for corpus references
apt_packages=(espeak-ng flite festival festvox-kallpc16k pocketsphinx-testdata codec2-examples fortunes-min fortunes)
# the default speaker encoder (the quick suite scores speaker similarity); Ray (the quick suite
# runs as many runs at a time as the machine has cores)
extras="[speaker,ray]"
case "$job" in
  test|bench)  # the browser tests' headless chromium; the test-only Python packages ([dev])
    apt_packages+=(chromium sox)
    extras="[dev,speaker,ray]" ;;
esac
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
    torch_req="${TTSADAPT_TORCH:-torch>=2.4}"
    echo "[run.sh] GPU found: installing $torch_req${TTSADAPT_TORCH_INDEX:+ from $TTSADAPT_TORCH_INDEX}"
    "$VENV/bin/pip" install -q ${TTSADAPT_TORCH_INDEX:+--index-url "$TTSADAPT_TORCH_INDEX"} "$torch_req"
  else
    torch_req="${TTSADAPT_TORCH:-torch==2.13.0}"
    torch_index="${TTSADAPT_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
    echo "[run.sh] installing $torch_req (CPU build) from $torch_index"
    if ! "$VENV/bin/pip" install -q --retries 1 --timeout 30 --index-url "$torch_index" "$torch_req"; then
      echo "[run.sh] $torch_index unreachable: installing $torch_req from pip's configured index" \
        "(on Linux x86_64, PyPI's torch is the CUDA build)"
      "$VENV/bin/pip" install -q "$torch_req"
    fi
  fi
fi
stamp="$VENV/.ttsadapt-install"
want="$(cat pyproject.toml | sha256sum | cut -c1-16)"
have="$(cat "$stamp" 2>/dev/null || true)"
# installed for this pyproject.toml with this job's extras (the dev install has every extra)
if [ "$have" != "$want $extras" ] && [ "$have" != "$want [dev,speaker,ray]" ]; then
  echo "[run.sh] installing ttsadapt${extras} and its dependencies"
  "$VENV/bin/pip" install -q -e ".$extras"
  # voxcpm declares heavy dependencies it does not need for its model classes (gradio, funasr,
  # modelscope, torchaudio...), kokoro its misaki G2P (spaCy + a hub model); install both packages
  # themselves without them (see plugins/backbones/*/_import.py).
  "$VENV/bin/pip" install -q --no-deps "$VOXCPM" "$KOKORO"
  echo "$want $extras" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"

case "$job" in
  install)
    echo "[run.sh] installed: $("$VENV/bin/ttsadapt" --version)" ;;
  quick)
    ttsadapt run benchmarks/quick.toml --executor ray "$@" ;;
  test)
    ruff check .
    ruff format --check .
    mypy
    python -m pytest -q "$@" ;;
  bench)
    python -m pytest benchmarks/perf --benchmark-enable --benchmark-columns=min,mean,max,rounds -p no:cacheprovider "$@" ;;
  *)
    echo "usage: ./run.sh [quick|test|bench|install] [extra args]" >&2; exit 2 ;;
esac
