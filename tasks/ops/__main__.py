"""python -m tasks.ops: see tasks.ops.cli."""

import sys

from tasks.ops.cli import main

sys.exit(main())
