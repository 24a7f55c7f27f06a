"""The verb registry: one typed file-level function per verb, one way in for every door.

The command line, the Slicer worker, batch and the HTTP server (through the worker) all run a verb with
`run_verb(name, params, out, ctx)`; the verb's driver lives in its own package and returns a `Result`. Importing this
package is light (no torch): drivers are imported when their verb first runs.
"""

from multimodalgen.verbs.registry import VERBS, Param, Verb, get_verb, run_verb, verb_names
from multimodalgen.verbs.result import Result, RunContext

__all__ = ["VERBS", "Param", "Verb", "Result", "RunContext", "get_verb", "run_verb", "verb_names"]
