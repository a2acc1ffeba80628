"""views-stepshifter 1.4.0 driver: ``StepshifterModel`` on the calibration protocol.

Runs inside the views-stepshifter venv (darts, LightGBM, pandas 1.x, torch CPU; no ewspipe):

    drive_stepshifter.py INPUT.parquet OUT_DIR CONFIG.json

INPUT holds month_id, country_id, the target (raw counts) and the feature columns, all float64,
as the VIEWS data loader hands them to the model (features already computed, months up to the
end of the test window). CONFIG.json is the model config dict (``steps``, ``targets``,
``target_transform``, ``model_reg``, ``parameters``, ``sweep``) plus the ``partition``
({"train": [first, last], "test": [first, last]}). The driver calls the peer's public API the
way views-pipeline-core does for a calibration run: ``StepshifterModel(config,
partition).fit(df)`` then ``predict("calibration")``, which returns one frame per rolling
origin (13 sequences) in raw counts (the model applies ``log1p`` to the target inside and
``expm1`` to its output). Predictions go to ``OUT_DIR/predictions.npz``; prints JSON timings.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

t_start = time.perf_counter()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from views_stepshifter.models.stepshifter import StepshifterModel  # noqa: E402

t_imported = time.perf_counter()


def main(argv: list[str]) -> int:
    source, out, config_path = Path(argv[0]), Path(argv[1]), Path(argv[2])
    config = json.loads(config_path.read_text(encoding="utf-8"))
    partition = {k: tuple(v) for k, v in config.pop("partition").items()}
    target = config["targets"][0]

    t0 = time.perf_counter()
    df = pd.read_parquet(source).set_index(["month_id", "country_id"]).sort_index()
    t1 = time.perf_counter()
    model = StepshifterModel(config, partition)
    model.fit(df)
    t2 = time.perf_counter()
    preds = model.predict("calibration")
    t3 = time.perf_counter()

    origin0 = partition["train"][1]
    chunks = []
    for sequence, frame in enumerate(preds):
        month = frame.index.get_level_values("month_id").to_numpy(np.int64)
        chunks.append({
            "origin": np.full(len(month), origin0 + sequence, dtype=np.int64),
            "step": month - (origin0 + sequence),
            "month_id": month,
            "unit": frame.index.get_level_values("country_id").to_numpy(np.int64),
            "values": frame[f"pred_{target}"].to_numpy(np.float64)[:, None],
        })
    arrays = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    np.savez(out / "predictions.npz", **arrays)
    print(json.dumps({
        "import_s": t_imported - t_start, "load_s": t1 - t0, "fit_s": t2 - t1,
        "predict_s": t3 - t2, "fit_predict_s": t3 - t1, "rows": len(arrays["origin"]),
        "sequences": len(preds), "train_countries": int(df.loc[df.index.get_level_values(
            "month_id").max()].shape[0]),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
