import sys

from clm_core.cli import main

sys.exit(main())
