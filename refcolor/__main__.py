"""`python -m refcolor ...`: the same as the `refcolor` console script."""

import sys

from refcolor.cli import main

sys.exit(main())
