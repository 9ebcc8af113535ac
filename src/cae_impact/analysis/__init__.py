"""The study's figures: indicators, disclosure control and secrecy, published references, waves.

Built on the survey engine :mod:`cae_impact.estimation`; writes nothing a reader sees (that is
:mod:`cae_impact.render`).
"""
