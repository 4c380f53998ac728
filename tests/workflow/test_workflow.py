"""End-to-end runs of the Snakemake workflow on the tiny config (a minute or two)."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import ENV, ROOT, SNAKEMAKE

TINY = ROOT / "tests/config/tiny.yaml"


def snakemake(workdir, *args, check=True):
    result = subprocess.run(
        [*SNAKEMAKE, "--directory", str(workdir), "--configfile", str(TINY), *args],
        capture_output=True,
        text=True,
        cwd=workdir,
        env=ENV,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        )
    return result


def planned_jobs(workdir, *args) -> dict[str, int]:
    """Rule -> job count of what a dry run would execute."""
    out = snakemake(workdir, "-n", "--cores", "2", "--quiet", "rules", *args).stdout
    counts = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] != "total":
            counts[parts[0]] = int(parts[1])
    return counts


# The tests that share one tiny run go to one pytest-xdist worker (--dist loadgroup), in file
# order, so the run is made once; the other tests spread over the other workers.
TINY_RUN = pytest.mark.xdist_group("tiny_run")


@pytest.fixture(scope="session")  # session: a worker may run other modules' tests in between
def tiny_run(tmp_path_factory):
    _made_once(tmp_path_factory)
    workdir = tmp_path_factory.mktemp("tiny")
    snakemake(workdir, "--cores", "2")
    return workdir


def _made_once(tmp_path_factory) -> None:
    """Fail when a second pytest-xdist worker makes the tiny run: the group did not hold.

    pytest 9.2 ignores how pytest-xdist 3.8 tags grouped tests (pytest-dev/pytest-xdist#1386),
    and the run (minutes) is then made on every worker. requirements.lock pins pytest 9.1.1.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:
        return
    stamp = tmp_path_factory.getbasetemp().parent / "tiny_run.worker"  # shared by the workers
    try:
        with open(stamp, "x") as f:
            f.write(worker)
    except FileExistsError:
        pytest.fail(
            f"the tiny run is made a second time, on {worker} (first on {stamp.read_text()}): "
            "--dist loadgroup did not group its tests; pytest 9.2 with pytest-xdist 3.8 has "
            "this bug (pytest-dev/pytest-xdist#1386): install from requirements.lock"
        )


def read(tiny_run, path: str) -> str:
    return (tiny_run / "results/tiny" / path).read_text()


def csv(tiny_run, path: str) -> pd.DataFrame:
    return pd.read_csv(tiny_run / "results/tiny" / path)


# What a figure file starts with: a PNG's signature, a PDF's header
FIGURE_MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "pdf": b"%PDF-"}
TINY_FIGURES = [
    "nll_vs_ensemble_size", "nll_vs_inference_time", "fig1_concept",
    "fig2_nll_vs_ensemble_size_bma", "fig8_nll_vs_memory_bma", "fig3_landscape_swag",
    "fig6_landscape_ivon", "fig4_landscape_sse", "fig5_fast_sse_csgld",
    "fig9_fast_sse_de_multiivon", "lpe_across_formats",
]  # fmt: skip


@pytest.mark.slow
@TINY_RUN
def test_every_figure_of_the_tiny_run_is_a_png_and_a_pdf(tiny_run):
    for name in TINY_FIGURES:
        for ext, magic in FIGURE_MAGIC.items():
            head = (tiny_run / f"figures/tiny/{name}.{ext}").read_bytes()[: len(magic)]
            assert head == magic, f"{name}.{ext}"


@pytest.mark.slow
@TINY_RUN
def test_every_table_of_the_tiny_run_is_written_in_its_three_forms(tiny_run):
    for table in ("table1", "table5", "table6", "table_formats"):
        rows = csv(tiny_run, f"tables/{table}.csv")
        assert len(rows) >= 2 and "method" in rows, table
        md = read(tiny_run, f"tables/{table}.md").splitlines()
        assert md[0].startswith("| ") and md[1].startswith("|---"), table  # a Markdown table
        assert "\\begin{tabular}" in read(tiny_run, f"tables/{table}.tex"), table
    for name in ("fig3_landscape_swag", "fig6_landscape_ivon", "fig4_landscape_sse"):
        plane = csv(tiny_run, f"landscapes/{name}.csv")
        assert len(plane) > 0 and plane.notna().all().all(), name
    assert len(csv(tiny_run, "fig1_concept.csv")) > 0


@pytest.mark.slow
@TINY_RUN
def test_table1_scores_hold_every_run_with_its_controls(tiny_run):
    scores = csv(tiny_run, "scores.csv")
    # 2 models x (FP32 + 2 precisions x (RTN + 2 seeds x 3 sizes))
    assert len(scores) == 2 * (1 + 2 * (1 + 2 * 3))
    assert set(scores["method"]) == {"fp32", "rtn", "lpe-bsr"}
    assert scores[["nll", "err", "ece", "brier"]].notna().all().all()
    # the controls: every run timed and calibrated on the validation split
    assert scores[["infer_us", "temperature", "nll_ts", "ece_ts"]].notna().all().all()
    assert (scores["infer_us"] > 0).all() and (scores["temperature"] > 0).all()
    table1 = read(tiny_run, "tables/table1.md")
    assert "FP32 + TS" in table1 and "LPE-BSR + TS" in table1 and " µs |" in table1
    assert "Converged (best val NLL change over the last 20% of epochs" in table1
    for table in ("table5", "table6"):
        assert " + TS |" in read(tiny_run, f"tables/{table}.md"), table


@pytest.mark.slow
@TINY_RUN
def test_the_claims_report_states_the_gate_and_every_claim(tiny_run):
    claims = read(tiny_run, "claims.md")
    assert all(f"## Claim {n}" in claims for n in (1, 2, 3, 4, 5, 6, 7, 8))
    assert "## Claim 9: (control of claim 3" in claims
    # two-epoch models: the convergence gate fails, loudly, before any claim
    assert "**Convergence gate FAILED for" in claims.split("## Claim 1")[0]
    assert "| vit_mini_t |" in claims.split("## Convergence gate")[1].split("## Claim")[0]
    assert "(train_noise; trained models in brackets): vit_mini_t (2)." in claims
    assert "vit_mini_s trained once, their bands cover the draws only" in claims
    assert "IVON's learned posterior: the median ratio" in claims
    assert re.search(
        r"^- \*\*(holds|fails|within noise), leaning (for|against)\*\*: .*band ±", claims, re.M
    )


@pytest.mark.slow
@TINY_RUN
def test_bma_scores_hold_every_run_at_the_fine_tunings_budget(tiny_run):
    bma = csv(tiny_run, "bma/scores.csv")
    # 3 runs x (FP32 + 1 precision x 2 seeds x 3 sizes) + 2 posteriors x 2 seeds x 3 sizes
    assert len(bma) == 3 * (1 + 2 * 3) + 2 * 2 * 3
    assert set(bma["optimizer"]) == {"sgd", "swag", "ivon"}
    assert set(bma["method"]) == {"fp32", "lpe-bsr", "swag-bma", "ivon-bma"}
    assert bma[["nll", "err", "ece"]].notna().all().all()
    finetuned = bma[bma["method"] == "fp32"].set_index("optimizer")["backward_passes"]
    assert (finetuned == pretrained_passes(tiny_run) + 2 * 10).all()  # 2 epochs x 10 steps


def pretrained_passes(tiny_run) -> int:
    scores = csv(tiny_run, "scores.csv")
    return scores[scores["model"] == "vit_mini_t"]["backward_passes"].iloc[0]


@pytest.mark.slow
@TINY_RUN
def test_claim5s_band_holds_every_checkpoint_of_the_fast_ensembles_model(tiny_run):
    claims = read(tiny_run, "claims.md")
    # the band holds the spread over bma.model's checkpoints (main run + its retrained copy)
    assert "band also holds the starting checkpoint: 2 standard deviations over 2 trained" in claims
    for name in ("vit_mini_t", "vit_mini_t-trainseed1"):
        own = csv(tiny_run, f"fast/checkpoints/{name}.csv")
        assert set(own["method"]) == {"fp32", "lpe-bsr"}
        assert set(own["precision"]) == {"fp32", "int4"}  # tiny's fast.format


@pytest.mark.slow
@TINY_RUN
def test_a_retrained_copy_is_scored_at_the_first_bsr_seed(tiny_run):
    retrained = csv(tiny_run, "train_noise/vit_mini_t-trainseed1/scores.csv")
    assert set(retrained["method"]) == {"fp32", "rtn", "lpe-bsr"}
    assert set(retrained["seed"]) == {0}


@pytest.mark.slow
@TINY_RUN
def test_table6_holds_each_baseline_at_its_chosen_setting(tiny_run):
    baselines = csv(tiny_run, "baselines/scores.csv")
    plain = ["fp32", "lpe-bsr", "gaussian-noise", "gaussian-matched", "mc-dropout"]
    assert set(baselines["method"]) == set(plain)
    assert set(baselines["model"]) == {"vit_mini_s"}
    table6 = csv(tiny_run, "tables/table6.csv")
    # each row followed by its temperature-scaled twin (the calibration control)
    assert table6["method"].tolist() == [m for p in plain for m in (p, f"{p}+ts")]
    chosen = table6.set_index("method")["setting"]
    assert chosen["lpe-bsr"] in (
        "precision INT-6",
        "precision INT-4",
    )  # baselines.formats [int6, int4]
    assert chosen["gaussian-matched"] == chosen["lpe-bsr"].replace(
        "precision", "variance of LPE-BSR"
    )


@pytest.mark.slow
@TINY_RUN
def test_the_fast_ensembles_spend_equal_budgets_and_table5_pairs_them(tiny_run):
    fast = csv(tiny_run, "fast/scores.csv")
    methods = {"sse", "csgld", "de", "multiivon"}
    assert set(fast["method"]) == {"fp32", "lpe-bsr", "batchensemble"} | methods | {
        f"{m}+lpe-bsr" for m in methods
    }
    budget = fast.set_index(["method", "seed", "members"])["backward_passes"]
    budget = budget - pretrained_passes(tiny_run)
    run = 2 * 10  # one run: 2 epochs x 10 steps
    for method in methods - {"multiivon"}:  # 2 sources; 2 LPE-BSR copies each
        assert budget[method, 0, 1] == run and budget[method, 0, 2] == 2 * run
        assert budget[f"{method}+lpe-bsr", 1, 2] == run  # LPE-BSR adds no training budget
        assert budget[f"{method}+lpe-bsr", 1, 4] == 2 * run
    assert budget["multiivon", 0, 4] == 2 * run  # 2 runs x 2 draws
    assert budget["batchensemble", 0, 2] == 2 * run  # 2 members x one run's steps
    table5 = csv(tiny_run, "tables/table5.csv")
    plain = ["fp32", "batchensemble", "de", "lpe-bsr", "lpe-bsr"]
    assert table5["method"].tolist() == [m for p in plain for m in (p, f"{p}+ts")]


@pytest.mark.slow
@TINY_RUN
def test_the_number_systems_experiment(tiny_run):
    """formats: vit_mini_t in int3 (Table 1's own files), fp4_e2m1 and mxfp4."""
    scores, claims = csv(tiny_run, "scores.csv"), read(tiny_run, "claims.md")
    formats = pd.read_csv(tiny_run / "results/tiny/formats/scores.csv")
    assert set(formats["model"]) == {"vit_mini_t"}
    assert set(formats["precision"]) == {"fp32", "int3", "fp4_e2m1", "mxfp4"}
    int3 = formats[formats["precision"] == "int3"].reset_index(drop=True)
    same = scores[(scores["model"] == "vit_mini_t") & (scores["precision"] == "int3")]
    pd.testing.assert_frame_equal(int3, same.reset_index(drop=True))  # the same files
    table = pd.read_csv(tiny_run / "results/tiny/tables/table_formats.csv")
    # FP32, then the widest codes first (4-bit FP4 and MXFP4 before INT-3), each row followed
    # by its temperature-scaled twin
    assert table["precision"].tolist() == [*["fp32"] * 2, *["fp4_e2m1"] * 4, *["mxfp4"] * 4,
                                           *["int3"] * 4]  # fmt: skip
    plain = ["fp32", *["rtn", "lpe-bsr"] * 3]
    assert table["method"].tolist() == [m for p in plain for m in (p, f"{p}+ts")]
    md = (tiny_run / "results/tiny/tables/table_formats.md").read_text()
    assert "| FP4 E2M1 | LPE-BSR | 3 |" in md and "| MXFP4 | RTN | 1 |" in md
    claim8 = claims.split("## Claim 8")[1]
    assert "vit_mini_t FP4 E2M1: LPE-BSR (M=3)" in claim8 and "vit_mini_t MXFP4" in claim8


@pytest.mark.slow
@TINY_RUN
def test_no_temporary_file_is_left_behind(tiny_run):
    assert not list(tiny_run.rglob("*.tmp-*"))


@pytest.mark.slow
@TINY_RUN
def test_the_tiny_runs_scores_are_what_its_predictions_say(tiny_run):
    # recomputed here with numpy, from the files the workflow wrote: the FP32 NLL and error, and
    # the ensemble NLL of an LPE-BSR run at its full size
    scores = pd.read_csv(tiny_run / "results/tiny/scores.csv").set_index(
        ["model", "precision", "method", "seed", "members"]
    )
    runs = {"fp32": ("fp32", "fp32", 0, 1), "bsr-int3-seed1": ("int3", "lpe-bsr", 1, 3)}
    for run, key in runs.items():
        with np.load(tiny_run / f"work/tiny/preds/vit_mini_t/{run}.npz") as f:
            log_probs, labels = f["log_probs"].astype(np.float64), f["labels"]
        ensemble = np.logaddexp.reduce(log_probs, axis=0) - np.log(len(log_probs))
        nll = -ensemble[np.arange(len(labels)), labels].mean()
        err = 100 * (ensemble.argmax(-1) != labels).mean()
        row = scores.loc[("vit_mini_t", *key)]
        assert len(log_probs) == key[-1]
        assert row["nll"] == pytest.approx(nll, rel=1e-6)
        assert row["err"] == pytest.approx(err)


@pytest.mark.slow
@TINY_RUN
def test_nothing_to_do_after_a_run(tiny_run):
    assert planned_jobs(tiny_run) == {}


@pytest.mark.slow
@TINY_RUN
def test_deleting_one_intermediate_reruns_only_what_depends_on_it(tiny_run, tmp_path):
    # on a copy of the shared run (times kept), which the other tests then see whole: the file's
    # job (vit_mini_s at INT-3: RTN and both seeds) reruns, then what reads its outputs
    copy = shutil.copytree(tiny_run, tmp_path / "tiny", symlinks=True)
    (copy / "work/tiny/preds/vit_mini_s/bsr-int3-seed1.npz").unlink()
    assert planned_jobs(copy) == {
        "ensembles_pretrained": 1,
        "score": 1,
        "table1": 1,
        "figure_nll_vs_ensemble_size": 1,
        "figure_nll_vs_inference_time": 1,
        "claims": 1,
        "report_page": 2,  # the Table 1 and claims pages
        "all": 1,
    }


@pytest.mark.slow
@TINY_RUN
def test_a_changed_candidate_list_reruns_its_baseline_and_what_reads_it(tiny_run, tmp_path):
    assert planned_jobs(tiny_run) == {}  # the shared run is whole: no test changes it
    override = tmp_path / "dropout.yaml"
    override.write_text("baselines:\n  dropout_rates: [0.05, 0.1]\n")
    changed = planned_jobs(tiny_run, "--configfile", str(TINY), str(override))
    assert changed["baseline"] == 1, changed  # dropout's; the others keep their candidates
    assert changed["score_baselines"] == changed["table6"] == changed["claims"] == 1, changed
    assert changed["report_page"] >= 2, changed  # the Table 6 and claims pages at least


@pytest.mark.slow
@TINY_RUN
def test_the_html_report_holds_every_table_and_the_claims_in_categories(tiny_run):
    import zipfile

    snakemake(tiny_run, "--report", "report.zip")
    with zipfile.ZipFile(tiny_run / "report.zip") as archive:
        names = archive.namelist()
        text = "\n".join(archive.read(n).decode(errors="replace") for n in names
                         if n.endswith((".js", ".html")))  # fmt: skip
    for page in ("table1", "claims", "table5", "table6"):
        assert any(n.endswith(f"/{page}.html") for n in names), (page, names)
    for category in ("Table 1", "Claims", "BMA", "Fast ensembles", "Baselines"):
        assert f'"{category}"' in text, category
    # the pages render the tables and the claims, not links to them
    claims = (tiny_run / "results/tiny/claims.md").read_text()
    verdict = claims.split("**Verdict: ")[1].split("**")[0]
    page = (tiny_run / "results/tiny/report/claims.html").read_text()
    assert "<h2>Claim 1:" in page and f"Verdict: {verdict}" in page
    table = (tiny_run / "results/tiny/report/table1.html").read_text()
    assert table.count("<tr>") == len(pd.read_csv(tiny_run / "results/tiny/tables/table1.csv")) + 1
    assert "Test NLL, error and ambiguity" in text  # a page's caption


# Table 1's part of the tiny DAG: data, training, every member and prediction of Table 1, scores
KILL_TARGET = "results/tiny/tables/table1.csv"
# kill points: while a model trains, while members are written and predicted, while scoring
KILL_WHEN = (
    "work/tiny/logs/train/*.log",
    "work/tiny/logs/ensembles/*/*.log",
    "work/tiny/logs/score.log",
)


def _run_until(workdir, pattern: str, timeout: float = 900) -> bool:
    """Run the target; SIGKILL Snakemake and its jobs when a file matching ``pattern`` appears.
    Returns whether it was killed (False: the run ended first)."""
    import glob
    import signal
    import time

    command = [*SNAKEMAKE, "--directory", str(workdir), "--configfile", str(TINY), "--cores", "2",
               KILL_TARGET]  # fmt: skip
    process = subprocess.Popen(command, cwd=workdir, env=ENV, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        if glob.glob(str(workdir / pattern)):
            time.sleep(1.0)  # into the job's work
            os.killpg(process.pid, signal.SIGKILL)  # Snakemake and every job it started
            process.wait()
            return True
        time.sleep(0.2)
    process.wait(timeout=max(deadline - time.monotonic(), 1))
    return False


@pytest.mark.slow
@TINY_RUN
def test_a_killed_run_resumed_as_the_readme_says_gives_a_clean_runs_outputs(tiny_run, tmp_path):
    """Killed three times in Table 1's part of the DAG (while training, while members are made
    and predicted, while scoring), resumed as the README says, the run ends with the clean run's
    Table 1, byte for byte: resumption, and determinism from scratch of data, training, members,
    predictions and scores. (The rest of the DAG's determinism from scratch is checked by CI,
    which regenerates the mini profile and compares it exactly with the committed reference;
    resuming the whole tiny DAG here cost minutes of the test suite.)"""
    killed = []
    for pattern in KILL_WHEN:  # each time as the README says: unlock, then rerun
        killed.append(_run_until(tmp_path, pattern))
        snakemake(tmp_path, "--unlock")
    assert all(killed), f"the run ended before a kill point ({killed}): not all were tested"
    snakemake(tmp_path, "--cores", "2", KILL_TARGET)
    for path in TABLE1_FILES:  # byte for byte, but for the measured inference times
        assert _untimed(tmp_path / path) == _untimed(tiny_run / path), path
    assert not list(tmp_path.rglob("*.tmp-*")), "a temporary file survived the kills"


TABLE1_FILES = ("results/tiny/scores.csv", "results/tiny/tables/table1.csv",
                "results/tiny/tables/table1.md")  # fmt: skip
TIMED = re.compile(r"[\d.]+ µs")


def _untimed(path) -> str:
    """A results file with its measured inference times (the infer_us columns of a csv, the
    "µs" cells of a table) blanked: the one thing two runs never reproduce."""
    if path.suffix == ".csv":
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        timed = [c for c in frame.columns if c.startswith("infer_us")]
        assert timed, f"{path} has no measured times"
        return frame.drop(columns=timed).to_csv(index=False)
    return TIMED.sub("T µs", path.read_text())


def slurm_cluster() -> bool:
    """A SLURM cluster with accounting answers here (`.ci/slurm-local.sh up` makes one)."""
    if not (shutil.which("sinfo") and shutil.which("sacct")):
        return False
    return all(
        subprocess.run(cmd, capture_output=True).returncode == 0
        for cmd in (["sinfo", "-h"], ["sacct", "-n", "-X"])
    )


# The account and partition that .ci/slurm-local.sh makes; another cluster names its own.
SLURM_RESOURCES = [
    "--default-resources",
    f"slurm_account={os.environ.get('LPE_SLURM_ACCOUNT', 'lpe')}",
    f"slurm_partition={os.environ.get('LPE_SLURM_PARTITION', 'cpu')}",
    "mem_mb=2000",
    "runtime=30",
]


@pytest.mark.slow
@TINY_RUN
def test_the_readme_cluster_path_runs_members_and_predictions_on_slurm(tiny_run, tmp_path):
    """Where a SLURM cluster answers (`.ci/slurm-local.sh up`; CI makes one), docs/cluster.md's
    cluster path for real, through profiles/slurm-cpu with an account and a partition: a job that
    fails under SLURM (a data file that is not one) is reported with its SLURM log; after the fix,
    one model's part of Table 1 (data, training, members and predictions) completes with the local
    run's numbers exactly."""
    if not slurm_cluster():
        pytest.skip("no SLURM cluster answers here (.ci/slurm-local.sh up makes one)")
    profile = ["--profile", str(ROOT / "profiles/slurm-cpu"), *SLURM_RESOURCES]
    _a_failed_slurm_job_is_reported_with_its_logs(tmp_path, profile)
    snakemake(tmp_path, *profile, "--", SLURM_TARGET)  # --: not one of --default-resources
    for name in ("rtn-int3-seed0", "bsr-int3-seed0", "bsr-int3-seed1"):
        on_slurm = np.load(tmp_path / f"work/tiny/preds/vit_mini_t/{name}.npz")
        local = np.load(tiny_run / f"work/tiny/preds/vit_mini_t/{name}.npz")
        assert sorted(on_slurm.files) == sorted(local.files), name
        for key in set(local.files) - {"member_seconds"}:  # a measured time: never the same
            np.testing.assert_array_equal(on_slurm[key], local[key], err_msg=f"{name}: {key}")


# One model's part of Table 1 on SLURM: its data, its training, and the job that writes and
# predicts its INT-3 members (RTN and two LPE-BSR seeds); 3 jobs, each through sbatch.
SLURM_TARGET = "work/tiny/preds/vit_mini_t/bsr-int3-seed0.npz"


def _a_failed_slurm_job_is_reported_with_its_logs(workdir, profile):
    bad_data = workdir / "work/tiny/data/mnist1d.npz"
    bad_data.parent.mkdir(parents=True)
    bad_data.write_bytes(b"not a data file")
    failed = snakemake(workdir, *profile, check=False)
    output = failed.stdout + failed.stderr
    assert failed.returncode != 0, output
    assert "Error in rule train" in output, output
    slurm_logs = re.findall(r"\S*\.snakemake/slurm_logs/rule_train\S*\.log", output)
    assert slurm_logs, output
    for slurm_log in slurm_logs:  # kept, because the job failed, and it says what failed
        assert "Error in rule train" in Path(slurm_log).read_text(), slurm_log
    assert "Logfile work/tiny/logs/train/" in output  # the rule's own log is shown too
    bad_data.unlink()  # the fix


@pytest.mark.slow
def test_a_negative_csgld_temperature_stops_before_any_job(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("fast:\n  csgld:\n    temperature: -1\n")
    result = snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(bad), check=False)
    assert result.returncode != 0
    assert "fast.csgld.temperature" in result.stdout + result.stderr


@pytest.mark.slow
def test_a_swag_rank_above_the_snapshots_stops_before_any_job(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("bma:\n  swag:\n    rank: 99\n")
    result = snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(bad), check=False)
    assert result.returncode != 0
    message = result.stdout + result.stderr
    assert re.search(r"'bma.swag.rank' = 99 is larger than the \d+ snapshots", message), message
    assert not (tmp_path / "work").exists()


@pytest.mark.slow
def test_fewer_lpe_members_than_fast_copies_stops_before_any_job(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("lpe:\n  ensemble_size: 4\n")  # fast.copies: 5
    result = snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(bad), check=False)
    assert result.returncode != 0
    assert "lpe.ensemble_size (4) is below fast.copies (5)" in result.stdout + result.stderr
    assert not (tmp_path / "work").exists()


def test_bad_config_stops_before_any_job(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("quant:\n  formats: [int6, int40]\nlpe:\n  ensemble_size: 0\n")
    result = snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(bad), check=False)
    assert result.returncode != 0
    message = result.stdout + result.stderr
    assert "'quant.formats': unknown number format 'int40'" in message
    assert "'lpe.ensemble_size' = 0 is out of range" in message
    assert not (tmp_path / "work").exists()


def test_workflow_lints_clean():
    result = subprocess.run([*SNAKEMAKE, "--lint"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr, result.stdout + result.stderr


def test_snakemake_files_are_formatted():
    # next to this Python first: the venv's tools work without activating it
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    snakefmt = shutil.which("snakefmt", path=search)
    if snakefmt is None:
        pytest.skip("snakefmt is not installed (pip install -e .[test])")
    files = [ROOT / "Snakefile", *sorted((ROOT / "workflow/rules").glob("*.smk"))]
    result = subprocess.run([snakefmt, "--check", *map(str, files)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


PAPER = ROOT / "config/paper.yaml"


@pytest.mark.slow
def test_the_paper_profile_resolves_its_whole_dag_with_a_placeholder_path(tmp_path):
    result = subprocess.run(
        [*SNAKEMAKE, "--directory", str(tmp_path), "--configfile", str(PAPER), "-n", "--cores",
         "1", "--quiet", "rules"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    # one job per model x format (RTN and 3 seeds): 4 ViTs x 8 formats (Table 1's INT-4 and INT-6
    # among them: the same jobs), 2 CLIP models at INT-5, then LPE-BSR around the 3 fine-tuned
    # ViT-B/16 solutions at INT-5
    for rule, count in (("download_checkpoint", 4), ("download_zeroshot", 2),
                        ("ensembles_pretrained", 4 * 8), ("ensembles_large", 2),
                        ("score_formats", 1), ("table_formats", 1),
                        ("ensembles_finetuned", 3), ("table1", 1), ("table3", 1),
                        ("figure7", 1), ("claims", 1), ("finetune", 1), ("finetune_posterior", 2),
                        ("fast_train", 5), ("table5", 1), ("table6", 1), ("figures_bma", 1),
                        ("figures_fast", 1), ("figure_landscape", 3)):  # fmt: skip
        assert re.search(rf"^{rule}\s+{count}$", out, re.M), (rule, out)
    assert not re.search(r"^train\s", out, re.M)  # pretrained, not trained here
    assert "figure1" not in out  # the concept sketch is drawn on the mini data only


@pytest.mark.slow
def test_the_paper_profile_runs_end_to_end_on_offline_stand_ins(tmp_path):
    import timm
    import torch
    import yaml
    from helpers import image_folder, make_tiny_llama, write_mmlu

    from lpe.models.zeroshot import zeroshot_model
    from lpe.stages.download_checkpoint import download

    cache = tmp_path / "cache"
    config = yaml.safe_load((ROOT / "tests/config/tiny_paper.yaml").read_text())

    def stand_in(name, cache):  # what the download would fetch, without weights
        if name.endswith("+zeroshot"):
            tower = timm.create_model(name.removesuffix("+zeroshot"), pretrained=False)
            classes = torch.nn.functional.normalize(torch.randn(3, tower.num_classes), dim=-1)
            return zeroshot_model(tower, classes, 100.0)
        return timm.create_model(name, pretrained=False, num_classes=3)

    for name in config["models"] + config["large"]["models"]:  # put in the cache
        download(name, cache, tmp_path / "x.safetensors", fetch=stand_in)
    make_tiny_llama(cache / "tiny--llama")  # the language model's cached download
    write_mmlu(tmp_path / "mmlu")
    image_folder(tmp_path / "imagenet" / "val", 3)
    image_folder(tmp_path / "imagenet" / "train", 3, per_class=4)
    env = {**ENV, "HF_HUB_OFFLINE": "1"}  # no network, as on CI
    result = subprocess.run(
        [*SNAKEMAKE, "--directory", str(tmp_path), "--configfile",
         str(ROOT / "tests/config/tiny_paper.yaml"), "--cores", "2", "--config",
         f"dataset={{path: {tmp_path / 'imagenet'}}}", f"checkpoints={{cache: {cache}}}",
         f"llm={{mmlu: {tmp_path / 'mmlu'}}}"],
        capture_output=True, text=True, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    scores = pd.read_csv(tmp_path / "results/tinypaper/scores.csv")
    assert set(scores["model"]) == set(config["models"])
    assert set(scores["method"]) == {"fp32", "rtn", "lpe-bsr"}
    assert (scores["forward_passes"] == scores["members"]).all()
    assert len(scores) == 2 * (1 + 1 + 2 * 2)  # models x (FP32 + RTN + 2 seeds x 2 sizes)
    claims = (tmp_path / "results/tinypaper/claims.md").read_text()
    assert all(f"## Claim {n}" in claims for n in range(1, 8))
    assert (tmp_path / "figures/tinypaper/nll_vs_ensemble_size.png").stat().st_size > 0
    large = pd.read_csv(tmp_path / "results/tinypaper/large/scores.csv")
    assert set(large["model"]) == {*config["large"]["models"], "tiny/llama"}
    assert set(large["precision"]) == {"fp32", "int5"}
    table3 = pd.read_csv(tmp_path / "results/tinypaper/tables/table3.csv")
    assert table3["method"].tolist() == ["fp32", "rtn", "lpe-bsr"] * 2
    assert {"avg_loss_mean", "ambiguity_mean", "ens_loss_mean", "ece_mean"} <= set(table3)
    assert (tmp_path / "figures/tinypaper/fig7_large_models.pdf").stat().st_size > 0
    # the fine-tuning figures and tables: same rules as the mini profile, images as data
    bma = pd.read_csv(tmp_path / "results/tinypaper/bma/scores.csv")
    assert {"sgd", "swag", "ivon"} <= set(bma["optimizer"])
    fast = pd.read_csv(tmp_path / "results/tinypaper/fast/scores.csv")
    assert {"sse", "csgld", "de", "multiivon", "batchensemble"} <= set(fast["method"])
    table6 = pd.read_csv(tmp_path / "results/tinypaper/tables/table6.csv")
    assert {"gaussian-noise", "mc-dropout", "lpe-bsr"} <= set(table6["method"])
    for name in ("fig2_nll_vs_ensemble_size_bma", "fig3_landscape_swag", "fig4_landscape_sse",
                 "fig5_fast_sse_csgld", "fig9_fast_sse_de_multiivon"):  # fmt: skip
        assert (tmp_path / f"figures/tinypaper/{name}.pdf").stat().st_size > 0
    assert (tmp_path / "results/tinypaper/tables/table5.csv").stat().st_size > 0
    formats = pd.read_csv(tmp_path / "results/tinypaper/formats/scores.csv")  # config's one line
    assert set(formats["precision"]) == {"fp32", "nf4"}
    assert (tmp_path / "figures/tinypaper/lpe_across_formats.pdf").stat().st_size > 0


@pytest.mark.slow
def test_the_paper_profile_without_an_image_folder_stops_with_the_layout(tmp_path):
    result = subprocess.run(
        [*SNAKEMAKE, "--directory", str(tmp_path), "--configfile",
         str(ROOT / "tests/config/tiny_paper.yaml"), "--cores", "1", "--config",
         "dataset={path: ''}", "-n"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode != 0
    assert "'dataset.path' is empty" in result.stdout + result.stderr


def test_the_slurm_profiles_name_real_rules_and_send_gpu_rules_to_a_gpu_partition(tmp_path):
    import yaml

    # the paper profile's rules, as Snakemake lists them (some are named in a loop, per kind)
    listed = subprocess.run(
        [*SNAKEMAKE, "--directory", str(tmp_path), "--configfile", str(PAPER), "--list-rules"],
        capture_output=True, text=True, cwd=tmp_path, check=True,
    )  # fmt: skip
    rules = set(listed.stdout.split())
    assert {"ensembles_pretrained", "ensembles_large", "ensembles_finetuned"} <= rules, rules
    for name in ("slurm", "slurm-cpu"):
        profile = yaml.safe_load((ROOT / "profiles" / name / "config.yaml").read_text())
        named = set(profile.get("set-resources", {})) | set(profile.get("set-threads", {}))
        assert named <= rules, f"profiles/{name} names unknown rules {named - rules}"
        # CPUs per job come from the rule's threads: a fixed cpus_per_task would disagree
        assert "cpus_per_task" not in profile["default-resources"], name
        for rule, resources in profile.get("set-resources", {}).items():
            on_gpu = resources.get("gpu", 0) > 0
            partition = resources.get(
                "slurm_partition", profile["default-resources"].get("slurm_partition")
            )
            if partition is not None:
                assert (partition == "gpu") == on_gpu, f"profiles/{name}: {rule} -> {partition}"
