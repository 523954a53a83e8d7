"""The names `dfablate.compare` had before the comparison moved to `dfablate.comparison`."""

from dfablate.comparison import *  # noqa: F403
from dfablate.comparison import __all__  # noqa: F401
