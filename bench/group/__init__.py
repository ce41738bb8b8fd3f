"""One training group: students of one architecture trained at once (seeds, temperatures,
their scratch twins as alpha = 0), evaluated, and turned into rows.

``plan`` (member index ↔ trial, seed, role) · ``fit`` (the members fitted, one fit per run of
slots on the same rows) · ``evaluate`` (the test split, read once) · ``scratch`` (scratch
baselines, trained once per architecture) · ``rows`` (a trial's row and seed rows) · ``cost``
(parameters and FLOPs) · ``train`` (:func:`run_group`: the four in order) · ``transfer``
(``[transfer]``: what the students learn from) · ``augment`` (``[augment]``: views with a
consistent teacher).
"""
