"""python -m fastcolor.train (and torchrun -m fastcolor.train): fastcolor train."""

import sys

from ..errors import run
from . import main

if __name__ == "__main__":
    sys.exit(run(main, None, "fastcolor train"))
