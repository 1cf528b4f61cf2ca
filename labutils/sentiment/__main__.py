import sys

from labutils.sentiment.cli import main

sys.exit(main())
