"""The built-in MLflow tracker: ``harness run ... --track mlflow`` logs the run to MLflow.

One MLflow run per harness run, in the experiment named after the suite (or ``MLFLOW_EXPERIMENT_NAME``),
at ``MLFLOW_TRACKING_URI``, which must be set: a server (``http://127.0.0.1:5000``), a database
(``sqlite:///mlflow.db``, with the full ``mlflow`` package) or a local file store (``file:./mlruns`` with
``MLFLOW_ALLOW_FILE_STORE=true``, MLflow 3 keeps it in maintenance mode). Why no default: MLflow 3's own
default is a SQLite file in the working directory, which ``mlflow-skinny`` cannot write, and a run logged
somewhere the user did not choose is a run lost.

- parameters: suite name and hash, sampling, samples per prompt, overrides, dtype, batch size, models;
- tags: the harness run id, status, commit, CPU and device from the manifest's environment;
- one nested MLflow run per model, named after it, with its summary means as metrics under the metric's
  own name (``perplexity``, ``decode_tps``...), so MLflow's compare view lines models and runs up;
- artifacts: manifest.json, summary.json, summary.csv, samples.jsonl and report.html.

Why the means only: MLflow metrics are scalars; the per-sample values are in the samples.jsonl artifact and
the confidence intervals in summary.json. Needs the ``[mlflow]`` extra (``mlflow-skinny`` is enough).
"""

from __future__ import annotations

import os
import re
from typing import Any

from harness.errors import UserError
from harness.hookspecs import hookimpl
from harness.types import FinishedRun

EXTRA_HINT = "pip install 'tinylm-harness[mlflow]'"
ARTIFACTS = ("manifest.json", "summary.json", "summary.csv", "samples.jsonl", "report.html")
#: MLflow keys allow letters, digits, _ - . space / : everything else in a model spec becomes _.
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /]")


def _key(text: str) -> str:
    return _KEY_UNSAFE.sub("_", text)[:250]


def _params(manifest: dict[str, Any]) -> dict[str, Any]:
    suite = manifest.get("suite", {})
    sampling = suite.get("sampling", {})
    params = {
        "suite": suite.get("name"),
        "suite_sha256": suite.get("sha256"),
        "samples_per_prompt": suite.get("samples_per_prompt"),
        "n_prompts": suite.get("n_prompts"),
        "dtype": manifest.get("dtype"),
        "batch_size": manifest.get("batch_size"),
        "models": ",".join(m.get("name", "") for m in manifest.get("models", [])),
        **{f"sampling.{key}": value for key, value in sampling.items()},
        **{f"override.{key}": value for key, value in (suite.get("overrides") or {}).items()},
    }
    return {key: str(value)[:6000] for key, value in params.items() if value is not None}


def _tags(manifest: dict[str, Any]) -> dict[str, str]:
    env = manifest.get("environment", {})
    git = env.get("git") if isinstance(env.get("git"), dict) else {}
    tags = {
        "harness.run_id": manifest.get("run_id"),
        "harness.status": manifest.get("status"),
        "harness.partial": str(bool(manifest.get("suite", {}).get("partial"))),
        "harness.commit": (git or {}).get("commit") or env.get("commit"),
        "harness.cpu": env.get("cpu"),
        "harness.device": env.get("device"),
    }
    return {key: str(value) for key, value in tags.items() if value is not None}


def _model_metrics(summary: dict[str, Any], model: str) -> dict[str, float]:
    metrics = {}
    for name, block in (summary.get("metrics") or {}).items():
        mean = (block.get("models") or {}).get(model, {}).get("mean")
        if isinstance(mean, (int, float)) and not isinstance(mean, bool):
            metrics[_key(name)] = float(mean)
    return metrics


class MLflowTracker:
    name = "mlflow"
    description = "log runs to MLflow (MLFLOW_TRACKING_URI; experiment = suite name or MLFLOW_EXPERIMENT_NAME)"

    def log_run(self, run: FinishedRun) -> str:
        try:
            import mlflow
        except ImportError:
            raise UserError(f"logging to MLflow needs the mlflow package; {EXTRA_HINT}") from None
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            raise UserError(
                "set MLFLOW_TRACKING_URI to where runs go: http://HOST:PORT (an MLflow server), sqlite:///mlflow.db "
                "(full mlflow package) or file:./mlruns with MLFLOW_ALLOW_FILE_STORE=true"
            )
        manifest = run.manifest
        experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME") or manifest.get("suite", {}).get("name") or "harness"
        mlflow.set_experiment(experiment)
        with mlflow.start_run(run_name=str(manifest.get("run_id", run.path.name))) as parent:
            mlflow.log_params(_params(manifest))
            mlflow.set_tags(_tags(manifest))
            for entry in manifest.get("models", []):
                model = entry.get("name", "")
                with mlflow.start_run(run_name=_key(model), nested=True):
                    info = entry.get("info") or {}
                    mlflow.log_params(
                        {
                            key: str(value)[:6000]
                            for key, value in {
                                "model": model,
                                "backend": info.get("backend"),
                                "parameters": info.get("parameters"),
                                "status": entry.get("status"),
                            }.items()
                            if value is not None
                        }
                    )
                    mlflow.log_metrics(_model_metrics(run.summary, model))
            for name in ARTIFACTS:
                if (run.path / name).is_file():
                    mlflow.log_artifact(str(run.path / name))
            run_id = parent.info.run_id
        return f"logged to MLflow experiment {experiment!r} as run {run_id} ({mlflow.get_tracking_uri()})"


TRACKER = MLflowTracker()


@hookimpl
def register_trackers(register) -> None:
    register(TRACKER)
