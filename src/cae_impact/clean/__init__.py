"""Cleaning: from an export read by :mod:`cae_impact.ingest` to pseudonymous, validated data.

Cleaning rules, the processed-data schema, the export validator and the personal-data scan of
what the build publishes.
"""
