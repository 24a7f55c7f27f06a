"""``python -m multimodalgen.worker``: run a backend worker on stdin/stdout (see `runner`)."""

import sys

from multimodalgen.worker.runner import main

if __name__ == "__main__":
    sys.exit(main())
