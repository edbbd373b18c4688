"""``python -m mlp`` is ``mlp-train``."""

import sys

from .train import main

sys.exit(main())
