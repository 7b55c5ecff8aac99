import sys

from cendetect.cli import main

sys.exit(main())
