"""Figures as files: matplotlib without a display, and png/pdf written atomically and reproducibly.

Every figure stage imports ``plt`` and ``sns`` from here, so the file-only backend (Agg) is chosen
before pyplot is imported, in one place.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from lpe.core.artifacts import write_with  # noqa: E402

__all__ = ["plt", "save_figure", "sns"]


def save_figure(fig: plt.Figure, prefix: str) -> None:
    """``prefix.png`` and ``prefix.pdf``, atomically; the pdf without a creation date."""
    write_with(f"{prefix}.png", lambda tmp: fig.savefig(tmp, format="png", dpi=150))
    write_with(
        f"{prefix}.pdf",
        lambda tmp: fig.savefig(tmp, format="pdf", metadata={"CreationDate": None}),
    )
    plt.close(fig)
    print(f"wrote {prefix}.png and .pdf")
