"""Writes that survive: atomic files and the run-folder lock, strict JSON, fault injection for
the crash tests, and deferred interrupts around commits.

``rundir`` (atomic writes, safe paths, the run lock) · ``jsonsafe`` (strict JSON) · ``faults``
(``KDBENCH_FAULT`` injection points) · ``interrupts`` (signals deferred while a commit runs).
"""
