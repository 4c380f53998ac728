"""The pinned CPU numerics: stages asked for different CPU code paths give identical bytes.

Each variant runs the real stages in fresh processes (the code paths are chosen when torch,
MKL and oneDNN first run, so only a new process can change them): generate data, train a small
model, draw LPE-BSR members and predict with them. Without the pinning (LPE_NATIVE_NUMERICS=1)
the default path and AVX2 differ on an AVX-512 machine by about 1e-5 in the trained weights
after one epoch (measured when this test was written).
"""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from lpe.core import numerics
from lpe.models.checkpoints import load_checkpoint

# The environments a user's shell or a CI runner might hand a stage.
VARIANTS = {
    "default": {},
    "avx2+mkl-compatible": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE,STRICT"},
    "default+mkl-auto+onednn-avx512": {
        "ATEN_CPU_CAPABILITY": "default",
        "MKL_CBWR": "AUTO",
        "ONEDNN_MAX_CPU_ISA": "AVX512_CORE",
    },
}


def _stage(tmp, env, *args):
    subprocess.run([sys.executable, "-m", *args], cwd=tmp, env=env, check=True, capture_output=True)


def _run_variant(tmp, overrides):
    """data -> train (1 epoch) -> 3 BSR members and their predictions; what must not move."""
    env = {k: v for k, v in os.environ.items() if k not in numerics.PINNED}
    env.pop(numerics.OPT_OUT, None)
    env.update(overrides)
    tmp.mkdir()
    _stage(tmp, env, "lpe.stages.data", "--dataset", "mnist1d", "--train", "1000", "--val", "200",
           "--test", "300", "--seed", "0", "--out", "d.npz")  # fmt: skip
    _stage(tmp, env, "lpe.stages.train", "--data", "d.npz", "--model", "vit_mini_t",
           "--epochs", "1", "--out", "m.safetensors")  # fmt: skip
    # the workflow's stage: generate the members, then predict with them
    _stage(tmp, env, "lpe.stages.ensembles", "--checkpoint", "m.safetensors", "--data", "d.npz",
           "--format", "int4", "--members", "3", "--seeds", "0", "--members-out", "members",
           "--out", "p.npz")  # fmt: skip
    state, _ = load_checkpoint(tmp / "m.safetensors")
    weights = hashlib.sha256()
    for name in sorted(state):
        weights.update(state[name].numpy().tobytes())
    member_bytes = hashlib.sha256()
    for path in sorted((tmp / "members").glob("*.safetensors")):
        member_bytes.update(_tensor_bytes(path))
    log_probs = np.load(tmp / "p.npz")["log_probs"]
    return weights.hexdigest(), member_bytes.hexdigest(), log_probs.tobytes()


def _tensor_bytes(path):
    """The tensors of a safetensors file in name order (the header's key order is not fixed)."""
    from safetensors.numpy import load_file

    arrays = load_file(path)
    return b"".join(arrays[name].tobytes() for name in sorted(arrays))


@pytest.mark.slow
@pytest.mark.skipif(not numerics._is_x86_64(), reason="the pinning is an x86-64 promise")
def test_stages_give_identical_bytes_whatever_cpu_path_the_environment_asks_for(tmp_path):
    results = {name: _run_variant(tmp_path / name, env) for name, env in VARIANTS.items()}
    reference = results["default"]
    for name, result in results.items():
        assert result[0] == reference[0], f"{name}: trained weights differ"
        assert result[1] == reference[1], f"{name}: member files differ"
        assert result[2] == reference[2], f"{name}: predictions differ"


def test_pinning_sets_the_code_paths_and_can_be_opted_out(monkeypatch):
    for key in numerics.PINNED:
        monkeypatch.setenv(key, "something-else")
    monkeypatch.setenv(numerics.OPT_OUT, "1")
    numerics.pin_cpu_numerics()
    assert all(os.environ[k] == "something-else" for k in numerics.PINNED)
    assert "native" in numerics.describe()
    monkeypatch.setenv(numerics.OPT_OUT, "0")
    numerics.pin_cpu_numerics()
    if numerics._is_x86_64():
        assert {k: os.environ[k] for k in numerics.PINNED} == numerics.PINNED
        assert "pinned (ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=AVX2,STRICT" in numerics.describe()


# What a user's program sees: its environment, thread counts and torch's CPU path, before and
# after importing lpe and the library modules a user imports (none of the stages or reports).
IMPORT_SCRIPT = """
import json, os, sys
import torch
def seen():
    return {"env": dict(os.environ), "threads": torch.get_num_threads(),
            "interop": torch.get_num_interop_threads()}
before = seen()
import lpe, lpe.core.runtime, lpe.core.metrics, lpe.data.images, lpe.data.datasets
import lpe.evaluation.prediction, lpe.evaluation.temperature, lpe.formats.number_formats
import lpe.evaluation.ensemble, lpe.evaluation.predictions_file, lpe.evaluation.verdicts
import lpe.formats.rounding, lpe.formats.policy, lpe.members.files, lpe.members.shared_base
import lpe.models.factory, lpe.models.checkpoints, lpe.methods, lpe.training.loop
import lpe.tools.apply
after = seen()
after["capability"] = torch.backends.cpu.get_cpu_capability()
print(json.dumps({"before": before, "after": after, "stages": sorted(
    m for m in sys.modules if m.startswith(("lpe.stages", "lpe.reports")))}))
"""

STAGE_SCRIPT = """
import json, os
import %s  # what `python -m <the program>` imports first
import torch
print(json.dumps({"env": {k: os.environ.get(k) for k in %r},
                  "capability": torch.backends.cpu.get_cpu_capability()}))
"""


def _fresh(script: str, **env: str) -> dict:
    """Run ``script`` in a fresh process whose environment has none of the pins, plus ``env``."""
    clean = {k: v for k, v in os.environ.items() if k not in (*numerics.PINNED, numerics.OPT_OUT)}
    run = subprocess.run([sys.executable, "-c", script], env={**clean, **env},
                         capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(run.stdout.splitlines()[-1])


def test_importing_lpe_changes_nothing_in_the_importing_process():
    seen = _fresh(IMPORT_SCRIPT, MKL_CBWR="AUTO")  # a value of the user's own is kept
    assert seen["after"]["env"] == seen["before"]["env"]
    assert seen["after"]["env"]["MKL_CBWR"] == "AUTO"
    assert not set(numerics.PINNED) - {"MKL_CBWR"} & set(seen["after"]["env"])
    assert seen["after"]["threads"] == seen["before"]["threads"]
    assert seen["after"]["interop"] == seen["before"]["interop"]
    assert seen["stages"] == []  # no program's package came along
    native = _fresh(
        "import json, torch; print(json.dumps(torch.backends.cpu.get_cpu_capability()))"
    )
    assert seen["after"]["capability"] == native  # torch's own choice for this CPU


@pytest.mark.skipif(not numerics._is_x86_64(), reason="the pinning is an x86-64 promise")
# one program of each package that pins on import: a stage, and a report (the claims and the
# tables compute on the pinned paths too; the pin lives in each package's __init__)
@pytest.mark.parametrize("program", ["lpe.stages.train", "lpe.reports.claims"])
def test_a_program_pins_its_own_process_whatever_the_shell_asked_for(program):
    script = STAGE_SCRIPT % (program, tuple(numerics.PINNED))
    seen = _fresh(script, MKL_CBWR="AUTO", ATEN_CPU_CAPABILITY="default")
    assert seen["env"] == numerics.PINNED
    assert seen["capability"] == "AVX2"
    opted_out = _fresh(script, MKL_CBWR="AUTO", **{numerics.OPT_OUT: "1"})
    assert opted_out["env"]["MKL_CBWR"] == "AUTO"


KERNEL_SCRIPT = """
import hashlib, sys
import numba, numpy as np, torch
from lpe.formats.packing import pack
from lpe.formats.rounding import bsr_codes
numba.set_num_threads(int(sys.argv[1]))
w = torch.randn(384, 1000, generator=torch.Generator().manual_seed(0))
scales = w.abs().amax(dim=1) / 7
codes = bsr_codes(w, scales, qmax=7, key=12345)
packed = pack(codes.numpy(), bits=4, qmax=7)
print(hashlib.sha256(codes.numpy().tobytes() + packed.tobytes()).hexdigest())
"""


@pytest.mark.slow
@pytest.mark.parametrize("cpu", ["generic", "haswell", "host"])
def test_numba_kernels_are_exact_for_any_thread_count_and_target_cpu(cpu, tmp_path):
    """The BSR and packing kernels are integer hashing plus one float32 division per weight
    (IEEE-exact), so machine code generated for another CPU (NUMBA_CPU_NAME) or run on more
    threads gives the same codes; compared with the torch integer path, which is the reference."""
    env = {**os.environ, "NUMBA_CPU_NAME": cpu, "NUMBA_CACHE_DIR": str(tmp_path)}
    digests = {
        threads: subprocess.run(
            [sys.executable, "-c", KERNEL_SCRIPT, str(threads)],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()  # fmt: skip
        for threads in (1, 2)
    }
    from lpe.formats.packing import pack
    from lpe.formats.rounding import _bsr_codes_torch

    w = torch.randn(384, 1000, generator=torch.Generator().manual_seed(0))
    scales = w.abs().amax(dim=1) / 7
    codes = _bsr_codes_torch(w, scales, 7, 12345, torch.int8).numpy()
    expected = hashlib.sha256(codes.tobytes() + pack(codes, bits=4, qmax=7).tobytes()).hexdigest()
    assert digests == {1: expected, 2: expected}
