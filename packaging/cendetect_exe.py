"""Entry point of the one-file executable (packaging/build_exe.sh): the ``cendetect`` command.

Started with no arguments (a double click), it opens the studio in the browser: the page asks
for the folder to work on. That is how CenDetect's Windows users start a tool.
"""

import multiprocessing
import sys

from cendetect.cli import main

if __name__ == "__main__":
    multiprocessing.freeze_support()  # worker processes of a frozen program re-enter here
    sys.exit(main(sys.argv[1:] or ["studio"]))
