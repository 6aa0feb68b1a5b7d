"""`python -m rock_agent` is `rock-agent`."""

import sys

from ._cli import main

sys.exit(main())
