"""Backend worker: a persistent process that runs backend tasks for Slicer and the HTTP server.

- `protocol`: the JSON-lines message schema (the one place it is defined);
- `tasks`: task name -> backend function registry (lazy imports), `TaskContext`;
- `runner`: the process's main loop (``python -m multimodalgen.worker``);
- `process`: the client side, starting a worker and talking to it (stdlib only; used by Slicer and the server);
- `state`: warm caches kept between requests; `builtin_tasks` / `engine_tasks`: the task functions.

Importing this package imports nothing heavy.
"""
