"""`python -m worker` is the `erasure` command."""

import sys

from worker.cli import main

sys.exit(main())
