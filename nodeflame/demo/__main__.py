"""``python -m nodeflame.demo``: see nodeflame.demo."""
import sys

from . import main

sys.exit(main())
