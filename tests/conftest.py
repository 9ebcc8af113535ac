"""Shared fixtures and the test tiers.

Every test belongs to one tier, given by its file (:data:`TIERS`; a file not listed is a unit
test) and applied as a pytest marker, so that each tier runs on its own:

============  =====================================================  ======================
tier          what                                                   make target
============  =====================================================  ======================
unit          one function or module, in memory, in seconds          ``make test-unit``
oracle        estimation against R's outputs, simulations            ``make test-oracle``
integration   the build: Make, papermill, kernels, documents          ``make test-integration``
conventions   the project's rules (notebooks, layers, layout)         ``make test-conventions``
============  =====================================================  ======================

``make test`` runs them all. The demo study and its codebook, which most files read, are loaded
once per session here (fixtures ``study`` and ``cb``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

TIERS = {
    "oracle": {"test_survey_oracles.py", "test_variance_strata.py", "test_survey_logit.py", "test_survey_simulation.py",
               "test_survey_domains.py", "test_survey_engine.py", "test_waves_simulation.py",
               "test_survey_inhouse.py"},
    "integration": {"test_notebooks.py", "test_build.py", "test_cli.py", "test_kernels.py",
                    "test_manifest.py", "test_issue15_small.py", "test_unusable_cae.py",
                    "test_published.py", "test_report.py", "test_demo.py", "test_privacy_scan.py",
                    "test_waves_build.py", "test_estimation_notebook.py"},
    "conventions": {"test_conventions.py", "test_layers.py"},
}
TIER_NAMES = ("unit", "oracle", "integration", "conventions")


def tier_of(path: Path) -> str:
    """The tier of a test file (``unit`` unless :data:`TIERS` says otherwise)."""
    for tier, files in TIERS.items():
        if path.name in files:
            return tier
    return "unit"


def pytest_collection_modifyitems(config, items):
    """Mark every collected test with its tier."""
    for item in items:
        item.add_marker(getattr(pytest.mark, tier_of(Path(str(item.fspath)))))


@pytest.fixture(scope="session")
def study():
    """The demo study (config/study.yaml), loaded once."""
    from cae_impact.spec.config import load_study

    return load_study()


@pytest.fixture(scope="session")
def cb(study):
    """The demo study's codebook, loaded once."""
    from cae_impact.spec.codebook import load_codebook

    return load_codebook(study.codebook)
