"""CAE-IMPACT: social-impact measurement for French business and employment cooperatives.

The package holds every piece of logic behind the reports: study configuration and codebook
loading, ingestion and cleaning of survey exports, design-based estimation, disclosure control,
French formatting and narrative, charts, report rendering, build orchestration and provenance.
Notebooks under ``notebooks/`` only call into it, show and save.
"""

__version__ = "0.1.0"
