"""A run end to end and the commands on its folder.

``sweep`` (orchestration: preflight, the run folder, each task's teacher, search,
certification and timing) · ``workers`` (``--workers N`` local processes) · ``timing`` (the
one latency pass after the search) · ``pull`` (a run folder rebuilt from its study) ·
``doctor`` (damage found and repaired) · ``provenance`` (packages, machine, git).
"""
