"""`salut service install|uninstall|status`: run `salut serve` as a per-user service.

`units.py` renders the files (pure), `plan.py` decides what to write and which service manager
commands to run (pure), `apply.py` carries a plan out with an injected command runner.
"""
