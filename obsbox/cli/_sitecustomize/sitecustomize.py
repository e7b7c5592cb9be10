"""Run by Python at start-up when `obsbox run` puts this directory first on PYTHONPATH.

It boots obsbox (configure from the environment, framework hooks), then runs the sitecustomize this one shadows,
if the environment has one, so `obsbox run` never takes a site's own start-up code away.
"""

import importlib.machinery
import importlib.util
import os
import sys

try:
    from obsbox.instrumentation.auto import boot

    boot()
except Exception as exc:  # never keep the program from starting
    sys.stderr.write(f"obsbox run: instrumentation did not start: {exc}\n")


def _chain() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


_chain()
