"""Verification tools: gradient checks of backward passes against central differences."""

from backproplab.verify.gradcheck import (
    DEFAULT_EPS,
    GOOD_MAX_REL_ERROR,
    REL_ERROR_FLOOR,
    WRONG_MIN_REL_ERROR,
    GradcheckReport,
    TensorCheck,
    format_table,
    gradcheck,
    numerical_gradient,
    rel_error,
    verdict_for,
)
from backproplab.verify.registry import CASES, GradcheckCase, module_names, register, run_case, select_cases

__all__ = [
    "CASES",
    "DEFAULT_EPS",
    "GOOD_MAX_REL_ERROR",
    "REL_ERROR_FLOOR",
    "WRONG_MIN_REL_ERROR",
    "GradcheckCase",
    "GradcheckReport",
    "TensorCheck",
    "format_table",
    "gradcheck",
    "module_names",
    "numerical_gradient",
    "register",
    "rel_error",
    "run_case",
    "select_cases",
    "verdict_for",
]
