"""views-baseline 1.0.2 driver: its baselines on the rolling-origin protocol, predictions to .npz.

Runs inside the views-baseline venv (views_baseline, views_frames, pandas 1.x; no ewspipe):

    drive_baseline.py PANEL.parquet OUT_DIR FIRST_ORIGIN N_ORIGINS STEPS WINDOW N_SAMPLES SEED

The panel (month_id, country_id, ged_sb) is read with pandas and lifted once into the peer's
own input type with its boundary adapter (``to_feature_frame``). For each rolling origin o the
models are built by the peer's ``BaselineModelCatalog`` with the partition
``{"train": (first month, o), "test": (o + 1, o + STEPS)}``, so ``train_end = o``: fitted on
months <= o and predicting o+1..o+STEPS for the countries present at o, which is the rolling-
origin protocol of DOMAIN.md section 2 (data up to the origin only). Each model's predictions
go to ``OUT_DIR/<model>.npz`` (origin, step, month_id, unit, values (N, S)); scoring is done by
the benchmark, with the same code for both sides. Prints JSON with the timings.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from views_baseline.model.catalog import BaselineModelCatalog
from views_baseline.model.frames.input import to_feature_frame

MODELS = ("ZeroModel", "LocfModel", "AverageModel", "ConflictologyModel")
TARGET = "ged_sb"


def main(argv: list[str]) -> int:
    panel_path, out = Path(argv[0]), Path(argv[1])
    first_origin, n_origins, steps, window, n_samples, seed = map(int, argv[2:8])
    t0 = time.perf_counter()
    df = pd.read_parquet(panel_path, columns=["month_id", "country_id", TARGET])
    df[TARGET] = df[TARGET].astype(np.float64)
    df = df.set_index(["month_id", "country_id"]).sort_index()
    frame = to_feature_frame(df, loa="cm", targets=[TARGET])
    first_month = int(df.index.get_level_values("month_id").min())
    t1 = time.perf_counter()

    config = {"regression_targets": [TARGET], "window_months": window, "n_samples": n_samples,
              "seed": seed}
    parts: dict[str, list[dict[str, np.ndarray]]] = {m: [] for m in MODELS}
    seconds = dict.fromkeys(MODELS, 0.0)
    for origin in range(first_origin, first_origin + n_origins):
        partition = {"train": (first_month, origin), "test": (origin + 1, origin + steps)}
        catalog = BaselineModelCatalog(config, partition, "cm")
        for name in MODELS:
            s0 = time.perf_counter()
            model = catalog.get_model(name)
            model.fit(frame)
            pf = model.predict(frame, sequence_number=0, output_length=steps)[TARGET]
            seconds[name] += time.perf_counter() - s0
            month = np.asarray(pf.index.time, dtype=np.int64)
            parts[name].append({
                "origin": np.full(len(month), origin, dtype=np.int64),
                "step": month - origin,
                "month_id": month,
                "unit": np.asarray(pf.index.unit, dtype=np.int64),
                "values": np.asarray(pf.values),
            })
    t2 = time.perf_counter()
    rows = {}
    for name, chunks in parts.items():
        arrays = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
        np.savez(out / f"{name}.npz", **arrays)
        rows[name] = len(arrays["origin"])
    print(json.dumps({
        "load_s": t1 - t0, "fit_predict_s": t2 - t1, "model_s": seconds, "rows": rows,
        "dtype": str(parts[MODELS[0]][0]["values"].dtype),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
