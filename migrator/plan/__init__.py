"""Reading and validating plan files; templates and secrets the plan refers to."""

from migrator.plan.loader import load_plan, parse_plan, resolve_state_url
from migrator.plan.secrets import read_secret
from migrator.plan.templates import Template, TemplateError

__all__ = [
    "Template",
    "TemplateError",
    "load_plan",
    "parse_plan",
    "read_secret",
    "resolve_state_url",
]
