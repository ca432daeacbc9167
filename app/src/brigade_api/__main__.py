import sys

from brigade_api.cli import main

sys.exit(main())
