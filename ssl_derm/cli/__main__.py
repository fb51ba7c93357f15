"""``python -m ssl_derm.cli``: the same as the ``ssl-derm`` command."""

import sys

from ssl_derm.cli import main

sys.exit(main())
