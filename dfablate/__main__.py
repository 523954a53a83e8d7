"""`python -m dfablate`: the `dfablate` command, for environments without the console script."""

import sys

from dfablate.cli import main

sys.exit(main())
