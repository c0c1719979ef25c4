"""Cost growth with the survey size -> reports/bench.json "growth", reports/bench_growth.md and
reports/plots/bench_growth.png.

The pipeline runs at each size (default 2,500, 5,000, 10,000 and 20,000 mock galaxies) in a temporary
copy of the project (fresh stores), on a reduced profile (`reduced_profile`: every kind of stage, few
trials and epochs: the four sizes take some 20-30 minutes on 2 quiet cores, about 13 of them the 24
stages' fixed starts, ~8 s each). Each stage runs alone (`dvc repro --single-item`, in topological order) under
a small wrapper process: its wall time, CPU time, the peak RSS of the largest process of its tree
(`RUSAGE_CHILDREN` of the wrapper) and, sampled every half second, the summed PSS of the whole tree
(the mock's workers side by side), and the 1-minute load (a busy machine inflates wall times; the CPU
times are the steadier). Per stage, and for the sum,
the log-log slope of time and memory against N is fitted and compared with that of N log N over the
same range; each is extrapolated with a power law to 200k and 10^8 galaxies. Batch prediction with
Spark (`galaxyprop.deploy.spark.spark_predict`, one local core, one thread) is timed on each of z's
registered models at the largest size; its marginal galaxies/s per core give core-hours per survey.

Run alone: `python benchmarks/growth.py [--sizes 2500 5000 10000 20000] [--no-spark] [--keep DIR] [--out DIR]`
(merges "growth" into reports/bench.json; `--sizes 600 1200` checks it in about 8 minutes; `--report-only`
refits and redraws the runs already there).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "tests"))
from project_copy import copy_project, edit_params, run, set_hyperparameters  # noqa: E402

SIZES = (2500, 5000, 10_000, 20_000)
PROJECTED = (200_000, 100_000_000)
PLOT = Path("reports/plots/bench_growth.png")
TABLE = Path("reports/bench_growth.md")
SAMPLE_S = 0.5                     # how often the process tree's memory is sampled
SPARK_ROWS = {"images": (2048, 8192), "multimodal": (2048, 8192), "catalogue": (20_000, 80_000)}

# The wrapper each stage runs under: its RUSAGE_CHILDREN peak is the largest descendant's (dvc, the stage
# script, a worker), whichever was largest, once all have been waited for.
PROBE = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
with open(sys.argv[1], "w") as log:
    code = subprocess.run(sys.argv[2:], stdout=log, stderr=subprocess.STDOUT).returncode
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": code, "seconds": time.perf_counter() - start, "cpu_s": usage.ru_utime + usage.ru_stime,
                  "max_rss_mib": usage.ru_maxrss / 1024}))
"""


def reduced_profile(params: dict, n_galaxies: int) -> None:
    """Every kind of stage at the default per-galaxy work (64-pixel stamps, the default encoder and head
    sizes: what grows with N), with the repetitions that only multiply it cut (trials, epochs, targets,
    sources, Monte-Carlo refits): z and kcorr_r01 (kcorr_r01 on measured+photometry alone), knn 3 trials
    and one for the others, 1 encoder epoch, one kcorrect_photoz source, the spectra from the sep
    measurements alone, 3 drift control splits. Each stage's start (imports, stores: ~5-10 s) stays."""
    params["mock"]["n_galaxies"] = n_galaxies
    params["train"].update(targets=["z", "kcorr_r01"], feature_heads=["knn", "gbt", "mlp", "clap"], image_heads=[],
                           secondary_heads=["gbt"])
    params["features"].update(compare=["photometry", "measured+photometry"], secondary=["measured"],
                              combined=["measured+photometry"])
    params["targets"]["kcorr_r01"]["features"] = ["measured+photometry"]
    for target in ("z", "kcorr_r01"):
        params["targets"][target].pop("n_trials", None)
    params["heads"]["knn"]["n_trials"] = 3
    for head in ("gbt", "mlp", "clap"):
        params["heads"][head]["n_trials"] = 1
    set_hyperparameters(params, "gbt", max_iter=200)
    set_hyperparameters(params, "mlp", max_epochs=5, width=128)
    set_hyperparameters(params, "clap", latent_dim=16, k_max=256, refit_width=128, max_epochs=5, n_realisations=1)
    params["encoder"]["training"].update(max_epochs=1, patience=1)
    params["baselines"]["kcorrect_specz"]["n_mc"] = 1
    params["baselines"]["kcorrect_photoz"].update(n_mc=1, features=["photometry"])
    params["spectra"].update(features=["measured"], heads=["knn", "mlp"], mlp={"max_epochs": 5})
    params["spectra"]["registry"]["features"] = ["measured"]
    params["drift"]["control_splits"] = 3
    params["adaptation"]["targets"] = ["z"]
    params["adaptation"]["mlp"]["max_epochs"] = 3
    # below ~2,400 galaxies the validation split is under 200 rows: calibrate anyway (the growth sizes are
    # above it; this keeps small check runs on the same code path)
    params["calibration"]["min_calibration_rows"] = min(params["calibration"]["min_calibration_rows"],
                                                         max(30, n_galaxies // 12))


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "OPTUNA_", "GALAXYPROP_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


def stage_order(root: Path) -> list[str]:
    """Every stage (matrix items each), in a topological order of `dvc dag` that keeps dvc.yaml's order."""
    names = run(["dvc", "stage", "list", "--name-only"], root).stdout.split()
    edges = re.findall(r'"([^"]+)"\s*->\s*"([^"]+)"', run(["dvc", "dag", "--dot"], root).stdout)
    upstream = {name: {a for a, b in edges if b == name} for name in names}
    order: list[str] = []
    while len(order) < len(names):
        ready = next(n for n in names if n not in order and upstream[n] <= set(order))
        order.append(ready)
    return order


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rpartition(")")[2].split()[1]), []).append(int(entry.name))
    return children


def tree_pss_mib(pid: int) -> float:
    """Summed proportional set size of `pid`'s descendants (shared pages split between them), in MiB."""
    children, stack, total = _children(), list(_children().get(pid, [])), 0
    while stack:
        child = stack.pop()
        stack.extend(children.get(child, []))
        try:
            rollup = Path(f"/proc/{child}/smaps_rollup").read_text()
        except OSError:
            continue
        found = re.search(r"^Pss:\s+(\d+) kB", rollup, re.M) or re.search(r"^Rss:\s+(\d+) kB", rollup, re.M)
        total += int(found.group(1)) if found else 0
    return total / 1024


def measure_stage(root: Path, stage: str, log: Path) -> dict:
    """One stage alone: wall seconds, the largest process's peak RSS and the tree's sampled peak PSS."""
    cmd = [sys.executable, "-c", PROBE, str(log), "dvc", "repro", "--single-item", stage]
    probe = subprocess.Popen(cmd, cwd=root, env=_env(), stdout=subprocess.PIPE, text=True)
    peak = [0.0]

    def sample():
        while probe.poll() is None:
            peak[0] = max(peak[0], tree_pss_mib(probe.pid))
            time.sleep(SAMPLE_S)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = probe.communicate()
    sampler.join()
    lines = out.strip().splitlines()
    if probe.returncode != 0 or not lines:
        raise RuntimeError(f"the wrapper of stage {stage} failed ({probe.returncode}); see {log}")
    result = json.loads(lines[-1])
    if result["rc"] != 0:
        raise RuntimeError(f"stage {stage} failed ({result['rc']}); its log, {log}:\n{log.read_text()[-4000:]}")
    return {"seconds": round(result["seconds"], 2), "cpu_s": round(result["cpu_s"], 2),
            "peak_rss_mib": round(result["max_rss_mib"], 1), "tree_peak_pss_mib": round(peak[0], 1),
            "load_1min": round(os.getloadavg()[0], 2)}


def run_size(n: int, workdir: Path, spark: bool) -> dict:
    """The reduced pipeline at `n` mock galaxies, stage by stage, in a fresh copy under `workdir`."""
    root = copy_project(workdir / f"n{n}")
    edit_params(root, lambda params: reduced_profile(params, n))
    logs = workdir / f"logs-{n}"
    logs.mkdir()
    stages = {}
    start = time.perf_counter()
    for stage in stage_order(root):
        stages[stage] = measure_stage(root, stage, logs / f"{stage.replace('/', '_')}.log")
        print(f"  n={n:>8} {stage:<32} {stages[stage]['seconds']:8.1f} s {stages[stage]['peak_rss_mib']:8.0f} MiB",
              flush=True)
    prepared = json.loads((root / "reports/prepare.json").read_text())
    internal = {p.stem: json.loads(p.read_text()) for p in sorted((root / "reports/timings").glob("*.json"))}
    result = {"n_galaxies": n, "wall_s": round(time.perf_counter() - start, 1), "stages": stages,
              "prepared": {k: v for k, v in prepared.items() if isinstance(v, (int, float))},
              "stage_timings": internal,          # what stages record themselves (reports/timings)
              "raw_mib": round(sum(f.stat().st_size for f in (root / "data/raw").rglob("*") if f.is_file()) / 2**20, 1)}
    if spark:
        result["spark"] = spark_probe(root)
    return result


# --- Spark batch prediction ------------------------------------------------------------------------------

def spark_probe(root: Path) -> dict:
    """`spark_rates` in a process of its own: one local core, one thread per library, a JVM that goes with it."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return {"skipped": "pyspark is not installed"}
    env = {**_env(), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "PYSPARK_SUBMIT_ARGS": "--driver-memory 4g pyspark-shell"}
    done = subprocess.run([sys.executable, __file__, "--spark-rates", str(root)], cwd=root, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        return {"failed": (done.stdout + done.stderr)[-2000:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _spark_inputs(root: Path, kind: str, uri: str):
    """The test split's inputs of the model `uri` (cutouts, fluxes or both), as a pandas frame and the
    model's input columns."""
    import mlflow.pyfunc
    import pandas as pd
    from serving import split_cutouts

    from galaxyprop.deploy.batch import ModelInput, catalogue_fluxes

    need = ModelInput.of(mlflow.pyfunc.load_model(uri))
    ids, cutouts = split_cutouts(root)
    if kind == "catalogue":
        table = catalogue_fluxes(root / "data/raw/fastspec.fits", need.columns).loc[ids].reset_index()
        return table, [*need.columns, *(["PHOTSYS"] if "PHOTSYS" in table else [])]
    frame = pd.DataFrame({"TARGETID": ids})
    if kind == "images":
        frame["image"] = list(cutouts.reshape(len(cutouts), -1).astype(np.float32))
        return frame, ["image"]
    fluxes = catalogue_fluxes(root / "data/raw/fastspec.fits", need.flux_columns).loc[ids]
    frame["cutouts"] = list(cutouts.reshape(len(cutouts), -1).astype(np.float32))
    frame["fluxes"] = list(fluxes[list(need.flux_columns)].to_numpy(np.float32))
    return frame, ["cutouts", "fluxes"]


def spark_rates(root: Path, target: str = "z", cores: int = 1) -> dict:
    """Marginal galaxies/s per core of each registered model of `target` (its `candidate`) through
    `spark_predict` on a local session: Parquet in (the test split tiled), Parquet out, at two sizes, so
    that the JVM, the UDF's model load and the first batch's warm-up fall out of the rate (the whole second
    run's rate where the difference is noise)."""
    import mlflow
    import pandas as pd

    from galaxyprop.deploy.spark import local_session, spark_predict

    uri = f"sqlite:///{root}/mlruns/mlflow.db"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    registered = json.loads((root / "reports/registered.json").read_text())
    models = {entry["inputs"]: entry for key, entry in registered.items() if key.partition("-")[0] == target}
    result = {"cores": cores, "threads_per_core": 1, "target": target, "models": {}}
    with tempfile.TemporaryDirectory(prefix="galaxyprop-spark-") as tmp, \
            local_session(cores=cores, scratch=Path(tmp) / "scratch") as spark:
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "1024")
        for kind, entry in sorted(models.items()):
            model_uri = f"models:/{entry['model']}@candidate"
            frame, inputs = _spark_inputs(root, kind, model_uri)
            times = {}
            for n in (256, *SPARK_ROWS[kind]):       # the first: the Python worker's start and the model's load
                path = Path(tmp) / f"{kind}-{n}.parquet"
                tiled = pd.concat([frame] * math.ceil(n / len(frame)), ignore_index=True).iloc[:n]
                tiled.assign(TARGETID=np.arange(n)).to_parquet(path, row_group_size=1024)
                start = time.perf_counter()
                out = spark_predict(spark, model_uri, spark.read.parquet(str(path)), inputs, ["TARGETID"])
                out.write.mode("overwrite").parquet(str(Path(tmp) / f"out-{kind}-{n}"))
                times[n] = time.perf_counter() - start
                path.unlink()
            (n1, t1), (n2, t2) = ((n, times[n]) for n in SPARK_ROWS[kind])
            whole = n2 / t2 / cores
            marginal = (n2 - n1) / (t2 - t1) / cores if t2 > t1 else None
            rate = marginal if marginal is not None and marginal < 3 * whole else whole   # noise: the whole run's
            result["models"][kind] = {
                "model": entry["model"], "head": entry["head"], "rows": [n1, n2],
                "seconds": [round(t1, 2), round(t2, 2)], "warm_up_s": round(times[256], 2),
                "marginal_galaxies_per_s_per_core": None if marginal is None else round(marginal, 1),
                "whole_galaxies_per_s_per_core": round(whole, 1), "galaxies_per_s_per_core": round(rate, 1),
                "core_hours": {f"{n:.0e}": round(n / rate / 3600, 3) for n in PROJECTED}}
    return result


# --- fits, projections, table and plot --------------------------------------------------------------------

def n_log_n_slope(n_min: float, n_max: float) -> float:
    """The log-log slope of N log N between two sizes: 1 + ln(ln n_max / ln n_min) / ln(n_max / n_min)."""
    return 1 + math.log(math.log(n_max) / math.log(n_min)) / math.log(n_max / n_min)


def loglog_fit(ns: list[int], values: list[float]) -> dict:
    """Least-squares slope of log(value) against log(N) (with its standard error from 3 sizes on) and the
    slope over the last doubling (the two largest sizes: the nearest to the asymptote)."""
    x, y = np.log(ns), np.log(np.maximum(values, 1e-3))
    slope, intercept = np.polyfit(x, y, 1)
    stderr = None
    if len(ns) > 2:
        residual = y - (slope * x + intercept)
        stderr = float(np.sqrt(residual @ residual / (len(ns) - 2) / ((x - x.mean()) @ (x - x.mean()))))
    last = float((y[-1] - y[-2]) / (x[-1] - x[-2]))
    return {"slope": round(float(slope), 3), "slope_stderr": None if stderr is None else round(stderr, 3),
            "slope_last": round(last, 3)}


#: below this log-log slope a stage's cost is taken as fixed plus noise (its projection: the power law alone)
GROWING_SLOPE = 0.25


def project(ns: list[int], values: list[float], slope: float, n: int) -> float:
    """From the largest size: the power law with `slope`, or, for a stage whose cost visibly grows (slope
    >= GROWING_SLOPE), the larger of it and the least-squares per-galaxy cost (a + b N over all sizes)
    carried on linearly. A stage's fixed start (imports, stores) makes its fitted slope < 1 over 2.5k-20k,
    and the power law would then undercut the per-galaxy work left once that start no longer counts."""
    power = values[-1] * (n / ns[-1]) ** slope
    if slope < GROWING_SLOPE:
        return power
    per_galaxy = max(float(np.polyfit(ns, values, 1)[0]), 0.0)
    return max(power, values[-1] + per_galaxy * (n - ns[-1]))


def summarise(runs: list[dict]) -> dict:
    """Per stage and for the whole pipeline: the series, their log-log fits, whether time grows faster than
    N log N, and the power-law projections."""
    ns = [r["n_galaxies"] for r in runs]
    reference = n_log_n_slope(ns[0], ns[-1])
    stages = {}
    names = list(runs[-1]["stages"])
    keys = ("seconds", "cpu_s", "peak_rss_mib", "tree_peak_pss_mib")
    series = {name: {k: [r["stages"][name][k] for r in runs] for k in keys} for name in names}
    series["total"] = {k: [round(sum(r["stages"][s][k] for s in names), 2) if k in ("seconds", "cpu_s")
                           else max(r["stages"][s][k] for s in names) for r in runs] for k in keys}
    for name, values in series.items():
        fits = {"time": loglog_fit(ns, values["seconds"]), "cpu": loglog_fit(ns, values["cpu_s"]),
                "rss": loglog_fit(ns, values["peak_rss_mib"])}
        # the steeper of the two slopes (a stage's fixed start flattens the fit; its share shrinks as N grows),
        # never below 0 for a projection (a falling time is noise)
        steepest = {k: max(f["slope"], f["slope_last"]) for k, f in fits.items()}
        entry = {**values, **fits, "faster_than_n_log_n": steepest["time"] > reference,
                 "cpu_faster_than_n_log_n": steepest["cpu"] > reference}
        if name != "total":
            entry["projected"] = {f"{n:.0e}": {
                "seconds": round(project(ns, values["seconds"], max(steepest["time"], 0.0), n), 1),
                "cpu_s": round(project(ns, values["cpu_s"], max(steepest["cpu"], 0.0), n), 1),
                "peak_rss_mib": round(project(ns, values["peak_rss_mib"], max(steepest["rss"], 0.0), n), 1)}
                for n in PROJECTED}
        stages[name] = entry
    stages["total"]["projected"] = {key: {
        "seconds": round(sum(stages[s]["projected"][key]["seconds"] for s in names), 1),
        "cpu_s": round(sum(stages[s]["projected"][key]["cpu_s"] for s in names), 1),
        "peak_rss_mib": max(stages[s]["projected"][key]["peak_rss_mib"] for s in names)}
        for key in stages[names[0]]["projected"]}
    load = [round(float(np.mean([r["stages"][s]["load_1min"] for s in names])), 2) for r in runs]
    return {"sizes": ns, "n_log_n_slope": round(reference, 3), "mean_load_1min": load,
            "faster_than_n_log_n": [s for s in names if stages[s]["faster_than_n_log_n"]],
            "cpu_faster_than_n_log_n": [s for s in names if stages[s]["cpu_faster_than_n_log_n"]], "stages": stages}


def _fmt_s(seconds: float) -> str:
    if seconds < 600:
        return f"{seconds:.1f} s"
    if seconds < 3 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:,.0f} d"


def _fmt_mib(mib: float) -> str:
    return f"{mib:.0f} MiB" if mib < 10 * 1024 else f"{mib / 1024:,.0f} GiB"


def _n(n: int) -> str:
    """2.5k, 200k, 1e8."""
    if n < 10**6:
        return f"{n / 1000:g}k"
    exponent = int(math.floor(math.log10(n)))
    return f"{n / 10**exponent:g}e{exponent}"


def markdown(growth: dict) -> str:
    ns, summary = growth["sizes"], growth["summary"]
    head = " | ".join(f"t@{_n(n)}" for n in ns)
    rss = " | ".join(f"RSS@{_n(n)}" for n in ns)
    cpus = growth["machine_cpus"]
    busy = max(summary["mean_load_1min"]) > 1.25 * cpus
    lines = [f"Reduced profile ({growth['profile']}); {cpus} CPU cores, mean 1-min load per size "
             f"{summary['mean_load_1min']}" + (" (**busier than the cores: wall times are inflated, the CPU slope "
                                               "is the steadier**)" if busy else "") + ". "
             f"Slope of N log N over {_n(ns[0])}-{_n(ns[-1])}: {summary['n_log_n_slope']}. Slopes: least squares "
             "over all sizes (± its standard error) / over the last doubling; ⚠: either is steeper than N log N. "
             "CPU: user + system seconds of the stage's processes. RSS: the largest process of the stage.", "",
             f"| stage | {head} | time slope | CPU slope | {rss} | RSS slope |",
             "|---|" + "---:|" * (2 * len(ns) + 3)]
    for name, s in summary["stages"].items():
        t, c, r = s["time"], s["cpu"], s["rss"]
        err = f" ± {t['slope_stderr']:.2f}" if t["slope_stderr"] is not None else ""
        label = f"**{name}**" if name == "total" else f"`{name}`"
        lines.append(f"| {label} | " + " | ".join(_fmt_s(v) for v in s["seconds"])
                     + f" | {t['slope']:.2f}{err} / {t['slope_last']:.2f}{' ⚠' if s['faster_than_n_log_n'] else ''}"
                     + f" | {c['slope']:.2f} / {c['slope_last']:.2f}{' ⚠' if s['cpu_faster_than_n_log_n'] else ''} | "
                     + " | ".join(_fmt_mib(v) for v in s["peak_rss_mib"]) + f" | {r['slope']:.2f} / {r['slope_last']:.2f} |")
    keys = list(summary["stages"]["total"]["projected"])
    labels = [_n(int(float(k))) for k in keys]
    lines += ["", f"Projection (from the largest size: the power law with the steeper of the two slopes, or where that "
              f"slope is at least {GROWING_SLOPE}, the larger of it and the least-squares cost per galaxy carried on "
              "linearly (a stage's fixed start flattens the slope); peak RSS likewise; the total "
              "is the sum of the stages' times, the largest stage's RSS):", "",
              "| stage | " + " | ".join(f"time @{k}" for k in labels) + " | "
              + " | ".join(f"RSS @{k}" for k in labels) + " |",
              "|---|" + "---:|" * (2 * len(keys))]
    for name, s in summary["stages"].items():
        p = s["projected"]
        label = f"**{name}**" if name == "total" else f"`{name}`"
        lines.append(f"| {label} | " + " | ".join(_fmt_s(p[k]["seconds"]) for k in keys) + " | "
                     + " | ".join(_fmt_mib(p[k]["peak_rss_mib"]) for k in keys) + " |")
    spark = growth.get("spark") or {}
    if spark.get("models"):
        lines += ["", f"Batch prediction with Spark (`spark_predict`, local[{spark['cores']}], one thread; at "
                  f"{_n(growth['spark_at'])} galaxies' models; marginal rate, JVM and model load excluded):", "",
                  "| model | head | galaxies/s per core | " + " | ".join(f"core-hours @{k}" for k in labels) + " |",
                  "|---|---|---:|" + "---:|" * len(keys)]
        for m in spark["models"].values():
            lines.append(f"| `{m['model']}` | `{m['head']}` | {m['galaxies_per_s_per_core']:,.0f} | "
                         + " | ".join(f"{m['core_hours'][k]:,.{2 if m['core_hours'][k] < 10 else 0}f}"
                                      for k in keys) + " |")
    return "\n".join(lines) + "\n"


def plot(growth: dict, path: Path) -> None:
    """Log-log time and peak RSS against N, one line per stage (and the total, with N and N log N beside it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns, stages = np.array(growth["sizes"]), growth["summary"]["stages"]
    fig, axes = plt.subplots(1, 2, figsize=(16, 7))
    colours = plt.cm.tab20(np.linspace(0, 1, 20))
    for i, (name, s) in enumerate(stages.items()):
        style = {"color": "black", "lw": 2.5} if name == "total" else {"color": colours[i % 20],
                                                                       "ls": ("-", "--", ":")[i // 20 % 3]}
        label = f"{name} (time {s['time']['slope']:.2f}, RSS {s['rss']['slope']:.2f})"
        axes[0].plot(ns, s["seconds"], marker="o", ms=3, label=label, **style)
        axes[1].plot(ns, s["peak_rss_mib"], marker="o", ms=3, **style)
    total = np.array(stages["total"]["seconds"])
    for label, curve, ls in (("∝ N", ns / ns[0], (0, (1, 3))),
                             ("∝ N log N", ns * np.log(ns) / (ns[0] * np.log(ns[0])), "-.")):
        axes[0].plot(ns, total[0] * curve, color="grey", ls=ls, lw=1, label=label)
    for ax, ylabel in zip(axes, ("wall time (s)", "peak RSS of the largest process (MiB)"), strict=True):
        ax.set(xscale="log", yscale="log", xlabel="mock galaxies N", ylabel=ylabel)
        ax.set_xticks(ns, [_n(int(n)) for n in ns])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_title(f"wall time per stage (N log N's slope here: {growth['summary']['n_log_n_slope']})")
    axes[1].set_title("peak memory per stage")
    fig.legend(*axes[0].get_legend_handles_labels(), fontsize=6.5, loc="center left", bbox_to_anchor=(0.76, 0.5),
               title="stage (log-log slopes)", title_fontsize=7)
    fig.tight_layout(rect=(0, 0, 0.76, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


PROFILE = ("targets z and kcorr_r01 (kcorr_r01 on measured+photometry only); heads knn, gbt, mlp, clap (+ gbt on "
           "measured); knn 3 trials, gbt/mlp/clap 1 (gbt 200 iterations, mlp and clap 5 epochs, clap 1 realisation); "
           "encoder 1 epoch; kcorrect n_mc 1, kcorrect_photoz on photometry; spectra from measured (knn, mlp 5 "
           "epochs); drift 3 control splits; adapt z, 3 epochs; 64-pixel stamps and the default model sizes")


def growth_benchmark(sizes: tuple[int, ...] = SIZES, spark: bool = True, out: Path = PROJECT,
                     keep: Path | None = None) -> dict:
    """Run every size, then fit, project, write the table and the plot; the result for bench.json.
    `keep`: a folder to leave each size's copy and stage logs in (by default they go with each size)."""
    sizes = tuple(sorted(sizes))
    runs = []
    with tempfile.TemporaryDirectory(prefix="galaxyprop-growth-") as tmp:
        for n in sizes:
            print(f"growth: the reduced pipeline at {n} galaxies ...", flush=True)
            if keep is not None:
                (keep / str(n)).mkdir(parents=True)
                runs.append(run_size(n, keep / str(n), spark=spark and n == sizes[-1]))
                continue
            with tempfile.TemporaryDirectory(dir=tmp) as workdir:     # one size's copy at a time on disk
                runs.append(run_size(n, Path(workdir), spark=spark and n == sizes[-1]))
    growth = {"profile": PROFILE, "machine_cpus": os.cpu_count(), "sizes": list(sizes),
              "stage_run": "each stage alone: dvc repro --single-item (its own dvc start, about 1-2 s)",
              "rss": "peak_rss_mib: the largest process of the stage's tree (dvc itself included); "
                     "tree_peak_pss_mib: the tree's summed PSS, sampled every 0.5 s",
              "runs": [{k: v for k, v in r.items() if k != "spark"} for r in runs]}
    if spark:
        growth["spark"], growth["spark_at"] = runs[-1].get("spark"), sizes[-1]
    return report(growth, out)


def report(growth: dict, out: Path) -> dict:
    """The fits and projections of `growth`'s runs, its table and its plot under `out`."""
    growth["summary"] = summarise(growth["runs"])
    (out / TABLE).parent.mkdir(parents=True, exist_ok=True)
    (out / TABLE).write_text(markdown(growth))
    plot(growth, out / PLOT)
    growth["table"], growth["plot"] = str(TABLE), str(PLOT)
    return growth


def merge_into_bench(out: Path, growth: dict) -> None:
    """Put the figures into `out`/reports/bench.json under "growth", keeping the other sections."""
    path = out / "reports" / "bench.json"
    bench = json.loads(path.read_text()) if path.exists() else {}
    bench["growth"] = growth
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(bench, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="mock galaxies per run")
    parser.add_argument("--no-spark", action="store_true", help="leave out the Spark batch-prediction rate")
    parser.add_argument("--keep", type=Path, default=None,
                        help="a new folder to keep each size's project copy and stage logs in (for a look afterwards)")
    parser.add_argument("--out", type=Path, default=PROJECT,
                        help="where reports/bench.json, reports/bench_growth.md and the plot go (default: this project)")
    parser.add_argument("--report-only", action="store_true",
                        help="refit, tabulate and plot the runs already in OUT/reports/bench.json (no pipeline runs)")
    parser.add_argument("--spark-rates", type=Path, help=argparse.SUPPRESS)   # the probe spark_probe runs
    args = parser.parse_args()
    if args.spark_rates:
        print(json.dumps(spark_rates(args.spark_rates.resolve())))
        return
    if args.report_only:
        out = args.out.resolve()
        bench = out / "reports" / "bench.json"
        if not bench.exists() or "growth" not in json.loads(bench.read_text()):
            parser.error(f"--report-only: {bench} has no growth section")
        merge_into_bench(out, report(json.loads(bench.read_text())["growth"], out))
        print((out / TABLE).read_text())
        return
    if len(set(args.sizes)) < 2:
        parser.error("--sizes: give at least two sizes to fit a slope")
    if args.keep is not None and args.keep.exists():
        parser.error(f"--keep: {args.keep} exists")
    out = args.out.resolve()
    growth = growth_benchmark(tuple(sorted(set(args.sizes))), spark=not args.no_spark, out=out,
                              keep=None if args.keep is None else args.keep.resolve())
    merge_into_bench(out, growth)
    print((out / TABLE).read_text())


if __name__ == "__main__":
    main()
