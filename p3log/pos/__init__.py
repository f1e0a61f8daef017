"""The scripted POS: runs a script of transactions and decisions through the client."""

from p3log.pos.runner import StepResult, format_result, run_pos, run_script
from p3log.pos.script import Script, ScriptError, Step, load_script, script_from_dict

__all__ = [
    "Script",
    "ScriptError",
    "Step",
    "StepResult",
    "format_result",
    "load_script",
    "run_pos",
    "run_script",
    "script_from_dict",
]
