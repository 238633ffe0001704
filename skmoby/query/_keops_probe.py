"""Whether pykeops can run here, asked of a child process and remembered on disk.

A KeOps that crashes in native code (pykeops 2.3 on CUDA 13 dies with SIGSEGV on its
first reduction) cannot be caught with ``try/except``: the process is gone. So the
question "does KeOps work on this device type?" is put to a child Python process, with a
timeout, that runs one small min/argmin reduction and compares it with torch. The
caller's process never imports pykeops for this.

The verdict is stored as a small JSON file in the user's cache folder
(``$XDG_CACHE_HOME/skmoby``, else ``~/.cache/skmoby``) under a key made of everything
that decides the answer -- the pykeops, keopscore, torch and CUDA versions, where pykeops
lives, the Python executable, the device name and the environment variables KeOps reads
-- so the probe runs once per environment, not once per process.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

#: Seconds the child may take (``SKMOBY_KEOPS_PROBE_TIMEOUT`` overrides it). The first
#: KeOps use compiles its engine and one formula (10 s to a minute); a child still
#: running after this is reported as hanging.
PROBE_TIMEOUT = 240.0

_MARK = "SKMOBY-KEOPS-PROBE "

# Runs in the child: the reduction k_center_greedy uses (argmin of squared distances),
# on the device type asked for, compared with torch on the CPU.
_CHILD = r"""
import contextlib, io, json, sys, warnings
kind = sys.argv[1]
out = {"ok": False, "reason": ""}
try:
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import torch
        if kind == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("torch sees no CUDA device")
        import pykeops
        pykeops.set_verbose(False)
        from pykeops.torch import LazyTensor
        g = torch.Generator().manual_seed(0)
        x = torch.randn(37, 3, generator=g)
        c = torch.randn(11, 3, generator=g)
        d2 = (LazyTensor(x.to(kind)[:, None, :]) - LazyTensor(c.to(kind)[None, :, :])) ** 2
        got = d2.sum(-1).argmin(dim=1).view(-1).long().cpu()
    want = torch.cdist(x.double(), c.double()).argmin(dim=1)
    if torch.equal(got, want):
        out["ok"] = True
    else:
        out["reason"] = "a test min/argmin reduction gave a wrong answer"
except BaseException as exc:
    out["reason"] = f"{type(exc).__name__}: {exc}".strip()[:500]
print("SKMOBY-KEOPS-PROBE " + json.dumps(out), flush=True)
"""


def cache_dir() -> Path:
    """The folder where verdicts are kept (``$XDG_CACHE_HOME/skmoby`` or ``~/.cache/skmoby``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "skmoby"


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _device_name(kind: str) -> str:
    if kind == "cuda":
        return torch.cuda.get_device_name()
    return f"{platform.machine()} {platform.processor()}".strip()


def _key(kind: str, origin: str) -> dict[str, str]:
    return {
        "device": kind,
        "device_name": _device_name(kind),
        "pykeops": _version("pykeops"),
        "pykeops_origin": origin,
        "keopscore": _version("keopscore"),
        "torch": torch.__version__,
        "cuda": str(torch.version.cuda),
        "python": sys.executable,
        # where KeOps looks for its compiler, CUDA headers and libraries
        "env": {
            k: os.environ.get(k, "")
            for k in ("CUDA_PATH", "CUDA_HOME", "LD_LIBRARY_PATH", "CXX", "KEOPS_CACHE_FOLDER")
        },
    }


def _child_env() -> dict[str, str]:
    """The caller's environment, with its ``sys.path`` so the child finds the same pykeops."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _run_child(kind: str, timeout: float) -> tuple[bool, str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, kind],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_child_env(),
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # The child may have started compilers of its own: end its whole process group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return False, f"a test reduction did not finish within {timeout:g} s (hang)"
    if proc.returncode < 0:
        try:
            name = signal.Signals(-proc.returncode).name
        except ValueError:
            name = f"signal {-proc.returncode}"
        return False, (
            f"a test reduction crashed the process with {name} (signal {-proc.returncode})"
        )
    lines = [ln for ln in out.splitlines() if ln.startswith(_MARK)]
    if not lines:
        tail = (err or out).strip().splitlines()[-1:] or ["no output"]
        return False, f"the test process exited with code {proc.returncode}: {tail[0][:300]}"
    verdict = json.loads(lines[-1][len(_MARK) :])
    return bool(verdict["ok"]), str(verdict["reason"])


def probe(kind: str, *, refresh: bool = False) -> tuple[bool, str]:
    """Whether KeOps runs on device type ``kind``, and if not, why.

    Parameters
    ----------
    kind : {"cpu", "cuda"}
        Device type.
    refresh : bool, default=False
        Ignore a stored verdict and ask again.

    Returns
    -------
    ok : bool
    reason : str
        Empty when ``ok``; otherwise what went wrong (crash with its signal, timeout,
        wrong answer, or the exception the child raised).
    """
    if kind not in ("cpu", "cuda"):
        return False, f"KeOps runs on CPU and CUDA devices only, not {kind!r}"
    if kind == "cuda" and not torch.cuda.is_available():
        return False, "torch sees no CUDA device"
    spec = importlib.util.find_spec("pykeops")
    if spec is None:
        return False, "pykeops is not installed"
    key = _key(kind, str(spec.origin))
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    path = cache_dir() / f"keops-probe-{digest}.json"
    if not refresh:
        try:
            stored = json.loads(path.read_text())
            if stored["key"] == key:
                return bool(stored["ok"]), str(stored["reason"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    timeout = float(os.environ.get("SKMOBY_KEOPS_PROBE_TIMEOUT") or PROBE_TIMEOUT)
    ok, reason = _run_child(kind, timeout)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".keops-probe-")
        with os.fdopen(fd, "w") as f:
            json.dump({"key": key, "ok": ok, "reason": reason}, f, indent=1)
        os.replace(tmp, path)
    except OSError:
        pass  # an unwritable cache only means asking again next time
    return ok, reason
