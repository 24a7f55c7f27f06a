"""`multimodalgen serve`: the worker protocol over HTTP (FastAPI + uvicorn), for a remote GPU machine.

`config` (validated settings), `manager` (uploads, jobs, sessions; no HTTP), `app` (routes), `cli` (the verb).
FastAPI and uvicorn are imported only when the server is built.
"""
