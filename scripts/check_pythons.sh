#!/usr/bin/env bash
# Install dfablate on other Pythons (pyenv) as a user would, and run it: numpy 2, no
# deepfilterlib, no Rust. Not part of CI: it downloads torch from PyPI (the CUDA build, about
# 1 GB; `--no-deps` skips the multi-GB nvidia packages) and builds pesq with gcc.
#
#   scripts/check_pythons.sh              # Python 3.12 and 3.13
#   scripts/check_pythons.sh 3.13         # one version
#   make check-pythons                    # the same as the first
#
# Per version, in $CHECK_PYTHONS_DIR (default /tmp/dfablate-check-pythons)/py<version>:
#   1. a fresh venv; torch==$TORCH_VERSION (2.13.0) with --no-deps plus its small dependencies;
#   2. `pip install -e '.[test,reference]'` with cargo kept off PATH (the reference extra is
#      empty there: deepfilternet/deepfilterlib install on Python <= 3.11 only);
#   3. checks: numpy >= 2, deepfilterlib and deepfilternet absent;
#   4. `dfablate train data=mini model=dfn3_tiny trainer=cpu logger=csv trainer.max_steps=2` (a run
#      shorter than one epoch: it must end with a checkpoint), then
#      `dfablate score` on real speech, then the model and feature tests (reference ones skip),
#      or with CHECK_PYTHONS_TESTS=all every test not marked slow.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${CHECK_PYTHONS_DIR:-/tmp/dfablate-check-pythons}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
VERSIONS=("$@")
[ ${#VERSIONS[@]} -gt 0 ] || VERSIONS=(3.12 3.13)

# Nothing may quietly build Rust: drop every PATH entry that holds cargo.
clean_path=""
IFS=: read -ra entries <<<"$PATH"
for entry in "${entries[@]}"; do
    [ -x "$entry/cargo" ] || clean_path="${clean_path:+$clean_path:}$entry"
done
export PATH=$clean_path
if command -v cargo >/dev/null 2>&1; then
    echo "error: cargo is still on PATH" >&2
    exit 1
fi

pyenv_python() {
    local root version
    root=$(pyenv root)
    version=$(pyenv versions --bare | grep -E "^${1//./\\.}(\.[0-9]+)?$" | sort -V | tail -1)
    if [ -z "$version" ]; then
        echo "error: no pyenv Python $1 (pyenv versions: $(pyenv versions --bare | tr '\n' ' '))" >&2
        return 1
    fi
    echo "$root/versions/$version/bin/python"
}

check_version() {
    local version=$1 python venv run
    python=$(pyenv_python "$version")
    venv=$WORK/py$version
    run=$WORK/run-py$version
    echo "== Python $version ($python)"
    rm -rf "$venv" "$run"
    mkdir -p "$run"
    "$python" -m venv "$venv"
    local pip=("$venv/bin/python" -m pip)
    "${pip[@]}" install --quiet --upgrade pip
    "${pip[@]}" install --quiet --no-deps "torch==$TORCH_VERSION"
    "${pip[@]}" install --quiet filelock typing-extensions sympy networkx jinja2 fsspec setuptools
    "${pip[@]}" install --quiet -e "$ROOT[test,reference]"
    "$venv/bin/python" - <<'EOF'
import importlib.util
import sys

import numpy
import torch

assert int(numpy.__version__.split(".")[0]) >= 2, f"numpy {numpy.__version__} < 2"
for name in ("libdf", "df"):
    assert importlib.util.find_spec(name) is None, f"{name} is installed"
print(f"python {sys.version.split()[0]}, numpy {numpy.__version__}, torch {torch.__version__}, "
      "no deepfilterlib/deepfilternet")
EOF
    (
        cd "$run"
        export DFABLATE_CACHE=$run/cache WANDB_MODE=offline OMP_NUM_THREADS=1
        "$venv/bin/dfablate" train data=mini model=dfn3_tiny trainer=cpu logger=csv \
            trainer.max_steps=2 num_threads=1 \
            callbacks.progress_bar=null name=check
        test -f outputs/check/original-seed43/checkpoints/last.ckpt
        "$venv/bin/dfablate" score "$ROOT/tests/data/clean_freesound_33711.wav" \
            "$ROOT/tests/data/noisy_snr0.wav" --out "$run/score.csv" --jobs 1
        cat "$run/score.csv"
    )
    local tests=(tests/unit/test_models.py tests/unit/test_features.py tests/unit/test_losses.py tests/unit/test_enhance.py)
    [ "${CHECK_PYTHONS_TESTS:-}" != all ] || tests=(-m "not slow")
    (cd "$ROOT" && "$venv/bin/python" -m pytest -q -p no:cacheprovider -rs "${tests[@]}")
    echo "== Python $version: OK"
}

for version in "${VERSIONS[@]}"; do
    check_version "$version"
done
