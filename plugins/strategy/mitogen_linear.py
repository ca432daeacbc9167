"""Brigade's default strategy: Ansible's linear strategy run over Mitogen.

Mitogen keeps one Python interpreter per host (and per become user) for the
whole run and sends it the module code once, instead of starting Python and
unpacking an AnsiballZ archive for every task. Measured on the local stack, a
no-op converge spends about five times less CPU on the hosts (see README,
"Control node").

The mitogen package is pinned in requirements-control.txt. Where it is not
installed (an AWX execution environment without it, for example) this falls
back to the plain linear strategy with a warning, so nothing else changes.
`ANSIBLE_STRATEGY=linear` turns it off for one run.
"""

from __future__ import annotations

from ansible.utils.display import Display

try:
    from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule
except ImportError as error:  # pragma: no cover - depends on the environment
    from ansible.plugins.strategy.linear import StrategyModule

    Display().warning(f"Mitogen is not installed ({error}); using the plain linear strategy.")

__all__ = ["StrategyModule"]
