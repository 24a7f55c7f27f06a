"""The `multimodalgen` command line: one verb per capability (see `main.py`)."""
