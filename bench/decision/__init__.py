"""The size decision and every sentence that states it.

``protocol`` (validation orders, fresh seeds and one read of the test split certify,
fixed-sequence testing) · ``recommend`` (the rule: the cheapest certified student within the
constraints) · ``claims`` (every sentence kdbench prints about a decision).
"""
