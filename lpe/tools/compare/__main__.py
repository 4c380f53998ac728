"""``python -m lpe.tools.compare``: the regeneration check (``lpe.tools.compare.trees``)."""

import sys

from lpe.tools.compare.trees import main

sys.exit(main())
