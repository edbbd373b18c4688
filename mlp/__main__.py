"""``python -m mlp`` is ``mlp-train``."""

import sys

from .cli.train import main

sys.exit(main())
