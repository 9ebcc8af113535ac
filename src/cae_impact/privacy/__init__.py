"""Personal data: pseudonymisation, detection and masking, formula neutralisation.

Used by every later stage (ingest masks free text as it reads, cleaning pseudonymises, the
indicator tables neutralise formulas, the build scans published files).
"""
