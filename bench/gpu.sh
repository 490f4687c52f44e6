#!/usr/bin/env bash
# The accelerator check: bench/gpu.py (exactness of --device cuda against the CPU run, samples/s against a float32
# torch SNN and T dense forwards on the same GPU) for VGG-16 and ResNet-18 (3x32x32). Sized for under 5 minutes on
# a 16-core GPU machine (per net: a compile on its CPU, a 32-sample CPU reference run, then the GPU timings); not
# yet run on a GPU.
#
# Run from the repository root on the GPU machine:   bash bench/gpu.sh [bench/gpu.py options]
# Dry run of the same code path on this CPU:        bash bench/gpu.sh --device cpu --batch 8 --steps 4 --check 4 --repeats 1
#
# What it needs there: torch (the image has it), numpy, h5py, networkx, tqdm and nir (pure Python but for numpy
# and h5py). Whatever does not import is installed into /tmp/snnc_site with pip, without dependencies: from the
# wheels in .whl/ when that folder exists (git-ignored; name it in the run's carry; fill it on a machine with pip:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl nir==1.0.8
# ), else from the package registry. lava is never needed: the CPU simulator and the compiler do not import it.
# snnc itself is imported from this checkout through a symlink tree laid out as pyproject.toml maps the packages
# (snnc = compiler/, snnc.ir = ir/, snnc.backends = backends/): no build, no Python-version check (the image's
# Python is 3.12; snnc's own pin, for lava-nc, is 3.10). SNNC_FROM_TREE=1 forces that tree where snnc is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
missing=()
for spec in "numpy:numpy<2" "h5py:h5py" "networkx:networkx" "tqdm:tqdm" "nir:nir==1.0.8"; do
  "$PY" -c "import ${spec%%:*}" 2>/dev/null || missing+=("${spec#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bench/gpu.sh: installing ${missing[*]} into /tmp/snnc_site" >&2
  src=()
  if [ -d .whl ]; then src=(--find-links .whl); fi
  "$PY" -m pip install -q --no-deps --no-compile --target /tmp/snnc_site "${src[@]}" "${missing[@]}"
  export PYTHONPATH=/tmp/snnc_site${PYTHONPATH:+:$PYTHONPATH}
fi
if [ "${SNNC_FROM_TREE:-0}" = 1 ] || ! "$PY" -c "import snnc.ir, snnc.backends.cpu" 2>/dev/null; then
  root=$(mktemp -d /tmp/snnc_tree.XXXXXX)
  mkdir "$root/snnc"
  for f in compiler/*; do ln -s "$PWD/$f" "$root/snnc/"; done
  ln -s "$PWD/ir" "$root/snnc/ir"
  ln -s "$PWD/backends" "$root/snnc/backends"
  export PYTHONPATH=$root${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
"$PY" -c "import sys, torch, snnc; print('python', sys.version.split()[0], '| torch', torch.__version__, '| cuda',
torch.cuda.is_available(), '| snnc from', snnc.__file__)"
exec "$PY" bench/gpu.py "$@"
