"""`python -m worker` is the `erasure` command."""

import sys

from worker.surfaces.cli import main

sys.exit(main())
