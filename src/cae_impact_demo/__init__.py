"""The synthetic demonstration study, outside the runtime package.

The generators of the demo's raw exports (``make data``, ``make data-wave2``), used by the
scripts and the tests. Never imported by :mod:`cae_impact` (``tests/test_layers.py``).
"""
