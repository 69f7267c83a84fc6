"""The ServerApp: read the run config, run the rounds. Wiring only."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from medgan_models.config import RunConfig
from server.federation import run_federation


def build_server_app(overrides: Mapping[str, Any] | None = None) -> ServerApp:
    """A ServerApp whose run config is ``context.run_config`` updated with ``overrides``."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        config = RunConfig.from_mapping({**context.run_config, **(overrides or {})})
        run_dir = Path(config.resume or config.out_dir)
        summary = run_federation(grid, config, run_dir,
                                 progress=lambda line: print(line, flush=True))
        print(f"run {summary['stopped']}: {summary['rounds']} rounds, epsilon max "
              f"{summary['epsilon_max']:.3f}; summary in {run_dir / 'summary.json'}", flush=True)

    return app


app = build_server_app()
