import sys

from ssl_derm.cli import main

sys.exit(main())
