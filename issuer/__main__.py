"""``python -m issuer`` = ``sa-issuer``."""

import sys

from issuer.cli import main

sys.exit(main())
