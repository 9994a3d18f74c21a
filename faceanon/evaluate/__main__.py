"""python -m faceanon.evaluate --help"""

import sys

from .cli import main

sys.exit(main())
