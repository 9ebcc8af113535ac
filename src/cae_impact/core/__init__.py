"""The bottom layer: what every stage shares.

Project root and relative paths (:mod:`.paths`), atomic writes and sha256 digests
(:mod:`.files`), the git state and the package versions recorded in provenance
(:mod:`.environment`), French number and date formatting (:mod:`.frenchfmt`). Imports nothing
of the package.
"""
