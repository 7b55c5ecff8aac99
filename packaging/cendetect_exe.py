"""Entry point of the one-file executable (packaging/build_exe.sh): the ``cendetect`` command."""

import multiprocessing
import sys

from cendetect.cli import main

if __name__ == "__main__":
    multiprocessing.freeze_support()  # worker processes of a frozen program re-enter here
    sys.exit(main())
