"""Write each CAE's cleaned responses as formula-neutral CSV (for scripts/verify_with_r.R, R has no parquet here).

Usage: python scripts/responses_to_csv.py PROCESSED_ROOT WAVE OUT_DIR
"""

import sys
from pathlib import Path

import pandas as pd

from cae_impact.privacy.personal_data import neutralise_frame

processed, wave, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
out.mkdir(parents=True, exist_ok=True)
for path in sorted((processed / wave).glob("*/responses.parquet")):
    # Free text is the respondents': a cell starting with =, +, -, @, a tab or CR would run as a
    # formula in a spreadsheet opening this file. Numbers are untouched (R reads them as before).
    frame = neutralise_frame(pd.read_parquet(path))
    frame.to_csv(out / f"{path.parent.name}.csv", index=False)
    print(f"{path} -> {out / (path.parent.name + '.csv')}")
