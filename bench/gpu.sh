#!/usr/bin/env bash
# The issue-18 accelerator check: bench/gpu.py (exactness of --device cuda against the CPU run, samples/s against
# a float32 torch SNN and T dense forwards on the same GPU) for VGG-16 and ResNet-18 (3x32x32). About 2-3 minutes
# on a 16-core H200 machine (compiles on its CPU, a 32-sample CPU reference run per net, then the GPU timings).
#
# Run from the repository root on the GPU machine:   bash bench/gpu.sh [bench/gpu.py options]
# Dry run of the same code path on this CPU:        bash bench/gpu.sh --device cpu --batch 8 --steps 4 --check 4 --repeats 1
#
# What it needs there and does not fetch (the machine reaches nothing outside): torch, numpy, h5py, networkx (the
# image has them) and nir, a pure-Python package. Where `import nir` fails it installs the wheels found in .whl/;
# put them there beforehand on a machine with pip (.whl/ must be git-ignored and named in the run's carry):
#   python3 -m pip download --no-deps --only-binary=:all: -d .whl nir==1.0.8
# snnc itself is imported from this checkout through a symlink tree laid out as pyproject.toml maps the packages
# (snnc = compiler/, snnc.ir = ir/, snnc.backends = backends/): no build, no Python-version check (the image's
# Python is 3.12; snnc's own pin, for lava-nc, is 3.10). SNNC_FROM_TREE=1 forces that tree where snnc is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import nir" 2>/dev/null; then
  if ! ls .whl/nir-*.whl >/dev/null 2>&1; then
    echo "bench/gpu.sh: nir is not installed and no .whl/nir-*.whl was carried (see this script's header)" >&2
    exit 2
  fi
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/snnc_site .whl/*.whl
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
