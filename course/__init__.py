"""Course tooling of Open Models Lab: sync, execute, status, the student edition, timings.

Run it as ``python -m course COMMAND`` (see ``course/__main__.py``); the
Makefile targets call it. Learners' notebooks never import this package:
what they import lives in ``labutils``.
"""
