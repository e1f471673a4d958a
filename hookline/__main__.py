"""`python -m hookline`: the same command as the `hookline` script."""

import sys

from hookline.cli import main

sys.exit(main())
