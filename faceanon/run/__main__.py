"""``python -m faceanon.run``: see `faceanon.run.cli`."""

import sys

from .cli import main

sys.exit(main())
