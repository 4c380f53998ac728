"""``python -m lpe.reports.claims``: the claims report (``lpe.reports.claims.report``)."""

from lpe.reports.claims.report import main

main()
