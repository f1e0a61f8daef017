"""The PayServer simulator: a trio server speaking P3, driven by scenarios.

    from p3log.sim import SimConfig, serve_sim

    config = SimConfig.from_files(scenario="signature", seed=7, time_scale=0)
    port = await nursery.start(serve_sim, config, "127.0.0.1", 0, "tcp")

Modules, one job each: `config` (SimConfig), `scenario` and `devices` (the data
files, read strictly by `files`), `server` (serve_sim), `session` (one connection:
dispatch and the immediate answers), `execute` and `amend` (the long-running
operations), `running` (what a session shares with its operations), `payserver`
(state shared by all sessions), `checks` (request validation), `replies` (answer
messages), `card`, `receipts`, `pacing`. See docs/sim.md.
"""

from p3log.sim.config import SimConfig
from p3log.sim.devices import DEFAULT_DEVICES, DevicesConfig, SimDevice, load_devices
from p3log.sim.errors import SimConfigError
from p3log.sim.replies import GENERIC_ERROR_TYPE
from p3log.sim.scenario import Rule, Scenario, load_scenario, scenario_dir, scenario_names
from p3log.sim.server import serve_sim

__all__ = [
    "DEFAULT_DEVICES",
    "GENERIC_ERROR_TYPE",
    "DevicesConfig",
    "Rule",
    "Scenario",
    "SimConfig",
    "SimConfigError",
    "SimDevice",
    "load_devices",
    "load_scenario",
    "scenario_dir",
    "scenario_names",
    "serve_sim",
]
