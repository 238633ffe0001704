#!/usr/bin/env bash
# Every GPU measurement of CoreSet (k-center greedy) in one run, most important first.
# Budget: under 4 minutes on one H100: each of the four steps has its own timeout, 240 s
# together; a run is expected to take 2-3 minutes. Logs go to ${OUT:-.gpu-out}/coreset-*.log.
#
#   bash benchmarks/gpu_coreset.sh            # on the GPU machine (python3 there)
#   TINY=1 PYTHON="uv run python" bash benchmarks/gpu_coreset.sh   # a quick try on a CPU
#
# Steps:
#   1. benchmarks/coreset.py: 50,000 x 512 float32, 5,000 labelled, 2,500 picks,
#      clustered and noise, against the full-cdist approach, with the bandwidth bound;
#   2. pytest -m gpu on tests/query (picks equal the float64 reference; no host sync);
#   3. benchmarks/coreset_backends.py: torch vs KeOps nearest-centre search on the
#      device (KeOps probed in a child process first; its verdict is printed);
#   4. KeOps: what keopscore finds as installed, and with the CUDA of the torch wheels
#      (CUDA_PATH, nvrtc and headers from the nvidia wheels); does the probe pass then?
# Without a GPU the same steps run on the CPU (the gpu tests skip).
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p "${OUT:-.gpu-out}"
OUT=$(cd "${OUT:-.gpu-out}" && pwd)
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
# One probe verdict for the whole run, kept with the logs; a KeOps probe gives up after
# this long (the default, 240 s, would not fit the budget).
export XDG_CACHE_HOME="$OUT/cache"
export SKMOBY_KEOPS_PROBE_TIMEOUT=${SKMOBY_KEOPS_PROBE_TIMEOUT:-25}
export KEOPS_CACHE_FOLDER="$OUT/keops-cache"

if [ "${TINY:-0}" = 1 ]; then
    N=3000; M=300; B=100; DIMS=2,8,64; BN=3000; BM=300
else
    N=50000; M=5000; B=2500; DIMS=2,8,32,64,128,512; BN=50000; BM=5000
fi

step() {  # step NAME SECONDS COMMAND...
    local name=$1 secs=$2; shift 2
    echo "== $name (timeout ${secs}s): $*"
    local t0=$SECONDS
    timeout --kill-after=5 "$secs" "$@" > "$OUT/coreset-$name.log" 2>&1
    local rc=$?
    tail -n 40 "$OUT/coreset-$name.log"
    echo "== $name: exit $rc after $((SECONDS - t0)) s"
}

$PY - > "$OUT/coreset-env.log" 2>&1 <<'EOF'
import importlib.metadata as md, platform, torch
def version(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None
print("python", platform.python_version(), {n: version(n) for n in
      ["torch", "triton", "pykeops", "keopscore", "numpy", "scikit-learn"]})
print("cuda", torch.version.cuda,
      torch.cuda.get_device_name() if torch.cuda.is_available() else "(no GPU)")
print("cuda" if torch.cuda.is_available() else "cpu")
EOF
cat "$OUT/coreset-env.log"
DEVICE=$(tail -n 1 "$OUT/coreset-env.log")
echo "device=$DEVICE N=$N M=$M b=$B $(date -u +%FT%TZ)"

if [ "$DEVICE" = cuda ]; then
    step bench 70 $PY benchmarks/coreset.py --device cuda --n $N --m $M --b $B --repeat 2
else
    step bench 70 $PY benchmarks/coreset.py --n $N --m $M --b $B \
        --only argmin_min,cdist,skmoby-torch
fi
step pytest 75 $PY -m pytest -o addopts="" -p no:cacheprovider -q -rs -m gpu tests/query
step backends 45 $PY benchmarks/coreset_backends.py --device $DEVICE --n $BN --m $BM \
    --dims $DIMS --repeat 3

# KeOps 2.3 looks for libcuda and libnvrtc with ctypes.util.find_library, for cuda.h and
# nvrtc.h under $CUDA_PATH/include, and links with -lnvrtc. The torch wheels carry them in
# site-packages/nvidia/cu13/{include,lib}, the library only as libnvrtc.so.13.
OUT_DIR="$OUT" DEVICE="$DEVICE" step keops-cuda 50 $PY - <<'EOF'
import importlib.util, os, subprocess, sys
out, dev = os.path.abspath(os.environ["OUT_DIR"]), os.environ["DEVICE"]
# What keopscore finds (no reduction is run, so nothing can crash), then the probe.
show = """
from ctypes.util import find_library
print("  find_library:", {n: find_library(n) for n in ("cuda", "nvrtc", "cudart")})
from keopscore.config import cuda_config as c
print("  keopscore: use_cuda", c.get_use_cuda(), "| include", c.cuda_include_path,
      "| nvrtc", c.libnvrtc_folder, "| cuda version", c.cuda_version, "|", c.cuda_message)
"""
probe = ("from skmoby.query import kcenter; ok = kcenter.keops_available(%r); "
         "print('  probe on %s:', ok, kcenter._keops_reason(%r))" % (dev, dev, dev))
def ask(title, env):
    print(title, flush=True)
    for code in (show, probe):
        try:
            subprocess.run([sys.executable, "-c", code], env=env, timeout=40)
        except subprocess.TimeoutExpired:
            print("  (no answer within 40 s)")

ask("as installed (the probe's verdict is the one of step 3):", dict(os.environ))
spec = importlib.util.find_spec("nvidia")
roots = list(spec.submodule_search_locations) if spec else []
nv = next((os.path.join(r, v) for r in roots for v in ("cu13", "cu12")
           if os.path.isfile(os.path.join(r, v, "include", "nvrtc.h"))), None)
print("CUDA of the nvidia wheels:", nv)
if nv is None:
    sys.exit(0)
lib = os.path.join(nv, "lib")
print(" ", sorted(f for f in os.listdir(lib) if f.startswith(("libnvrtc", "libcudart"))))
# -lnvrtc and find_library need the unversioned names the wheels do not ship
link = os.path.join(out, "nvrtc-link")
os.makedirs(link, exist_ok=True)
for f in os.listdir(lib):
    for stem in ("libnvrtc", "libcudart"):
        dst = os.path.join(link, stem + ".so")
        if f.startswith(stem + ".so.") and not os.path.lexists(dst):
            os.symlink(os.path.join(lib, f), dst)
paths = f"{link}:{lib}"
ask("with CUDA_PATH and the libraries of the wheels:", dict(
    os.environ, CUDA_PATH=nv,
    LD_LIBRARY_PATH=f"{paths}:{os.environ.get('LD_LIBRARY_PATH', '')}",
    LIBRARY_PATH=f"{paths}:{os.environ.get('LIBRARY_PATH', '')}",
    KEOPS_CACHE_FOLDER=os.path.join(out, "keops-cache-wheel"),
    XDG_CACHE_HOME=os.path.join(out, "cache-wheel")))
EOF

echo "logs in $OUT"
