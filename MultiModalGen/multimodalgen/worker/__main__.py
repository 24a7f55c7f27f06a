"""``python -m multimodalgen.worker``: run a backend worker on stdin/stdout (see `runner`)."""

import os
import sys

from multimodalgen.worker.runner import main

if __name__ == "__main__":
    code = main()
    sys.stderr.flush()
    # Exit at once: every result is already written and flushed, and a normal interpreter shutdown with torch
    # loaded takes ~2 s (thread pools), which would delay closing Slicer or a server session.
    os._exit(code)
