"""Import timm without paying for ``torch._dynamo`` (1.5-2.5 s of every model stage's start-up).

Importing timm imports every timm model. Two of its import-time statements import torch's
compiler, which no stage uses (nothing here is compiled):
- ``torchvision.ops.roi_align`` (timm.layers.create_norm imports ``torchvision.ops.misc``
  unguarded) runs ``from torch._dynamo.utils import is_compile_supported``;
- ``timm.models.naflexvit`` decorates a method with ``torch.compiler.disable``, which imports
  ``torch._dynamo`` when it is applied.

While timm is imported, both are replaced by stand-ins that defer the real thing to the first call,
then the originals are put back, so the semantics are unchanged (a call imports torch._dynamo then
and does what the original does). torchvision itself is still imported: timm needs
``torchvision.ops.misc``; ``benchmarks/stage_imports.py`` measures what each stage pulls in.
"""

from __future__ import annotations

import functools
import sys
import types

import torch
import torch.compiler

_DYNAMO_UTILS = "torch._dynamo.utils"
_REAL_DISABLE = torch.compiler.disable


def _is_compile_supported(device_type):
    from torch._dynamo.utils import is_compile_supported

    return is_compile_supported(device_type)


def _deferred_disable(fn=None, recursive=True, **kwargs):
    """``torch.compiler.disable``, applied when the decorated function is first called."""
    if fn is None:
        return functools.partial(_deferred_disable, recursive=recursive, **kwargs)

    @functools.wraps(fn)
    def call(*args, **kw):
        return _REAL_DISABLE(fn, recursive=recursive, **kwargs)(*args, **kw)

    return call


def import_timm() -> types.ModuleType:
    """timm, imported without torch._dynamo when it is not imported yet."""
    if "timm" in sys.modules or _DYNAMO_UTILS in sys.modules:
        import timm

        return timm
    stand_in = types.ModuleType(_DYNAMO_UTILS)
    stand_in.is_compile_supported = _is_compile_supported
    sys.modules[_DYNAMO_UTILS] = stand_in
    torch.compiler.disable = _deferred_disable
    try:
        import timm
    finally:
        del sys.modules[_DYNAMO_UTILS]
        torch.compiler.disable = _REAL_DISABLE
    return timm
