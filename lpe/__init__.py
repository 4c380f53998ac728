"""Low precision ensembling (LPE-BSR) and the stages of its replication suite.

Importing the package changes nothing in the importing process (no environment variable, no
thread count): the suite's pinned CPU numerics are set by its programs' entry points, and a
library user who wants them calls :func:`lpe.core.numerics.pin_cpu_numerics` (docs/apply.md).
"""


def __getattr__(name: str):
    # lpe.LowPrecisionEnsemble without importing torch and the formats on `import lpe`
    if name == "LowPrecisionEnsemble":
        from lpe.evaluation.ensemble import LowPrecisionEnsemble

        return LowPrecisionEnsemble
    raise AttributeError(f"module 'lpe' has no attribute {name!r}")


__all__ = ["LowPrecisionEnsemble"]
