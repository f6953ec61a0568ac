"""A graph of cached, content-addressed tasks, run in process or on Ray: the study and every sweep use it.

A task is a pure function of its resolved parameters and of its input tasks' outputs. Its key is the hash
of the function's name and version, its parameters and its inputs' keys; once it has finished, a ledger
entry under ``ROOT/tasks/`` records the key, and the task is never run again while the key is unchanged.
A changed input changes the keys of exactly the tasks that depend on it.
"""

from .executor import run_tasks
from .task import Task, TaskContext, ledger_entry

__all__ = ["Task", "TaskContext", "ledger_entry", "run_tasks"]
