"""What the study is: its configuration, codebook and questionnaire, and where each stage writes.

Imports only :mod:`cae_impact.core`.
"""
