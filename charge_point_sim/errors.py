"""Errors raised by the simulator on purpose.

A charging profile that a charger would reject is not an error: validation returns a reason string
that the OCPP side turns into a ``Rejected`` answer. Exceptions are for programming and configuration
mistakes (an EV with a negative battery, a naive datetime handed to the model).
"""

from __future__ import annotations


class SimulatorError(Exception):
    """Base class of every error this package raises on purpose."""


class InvalidModelError(SimulatorError, ValueError):
    """A charger, EV or meter was configured or driven with values that make no physical sense."""
