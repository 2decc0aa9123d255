"""Errors raised by the optimizer library.

Every error a user can cause names the field that was wrong and says how to fix it, so that the CLI
and the HTTP API can show it as it is, without a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass


class OptimizerError(Exception):
    """Base class of every error this package raises on purpose."""


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One thing wrong with an input: where (a path such as ``sessions[3].energy_kwh``) and what."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class InvalidProblemError(OptimizerError, ValueError):
    """The planning input is not valid. ``problems`` lists every field that is wrong."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        self.problems = tuple(problems)
        lines = [str(p) for p in self.problems]
        if len(lines) == 1:
            text = lines[0]
        else:
            text = f"{len(lines)} problems in the input:\n" + "\n".join(f"  - {x}" for x in lines)
        super().__init__(text)


class UnknownMethodError(OptimizerError, ValueError):
    """A method or engine name that the optimizer does not know."""


class SolverUnavailableError(OptimizerError):
    """The solver library could not be loaded or crashed before giving an answer."""
