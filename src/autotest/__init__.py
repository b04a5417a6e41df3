"""autotest: continuous tests for a repository that keeps several Python packages side by side.

A change in one package can silently break another.  autotest watches the whole tree and, on
every change, tests the package that changed first (it is the most likely to be broken), then
those that depend on it, then the packages that failed last time, then all the others.  It stops
at the first failing package and shows the output of that run alone; when everything passes it
prints one short line per package.

Copy this one file into ``utilities/`` of such a repository and run::

    python utilities/autotest.py              # watch; Ctrl+C or q to stop
    python utilities/autotest.py --once       # one cycle; exit 0 all passed, 1 otherwise

A package is any directory below the root holding pyproject.toml, setup.py or setup.cfg (test
data and templates aside; a root that is itself one project is the one package).  Each package
runs in its own subprocess, with the package directory as working directory, under pytest where
pytest would claim it and nose otherwise, with its own virtualenv's interpreter when it holds one
and the interpreter that runs this script otherwise.  ``--help`` lists the options; each can
also be set in ``[tool.autotest]`` of the root pyproject.toml or ``[autotest]`` of its setup.cfg.
"""

# What tools/build.py reads (as literals, without importing this package) to write the one file
# users copy, utilities/autotest.py.

# The modules, leaves first: each imports only modules listed before it (tests/test_quality.py
# holds them to it), and the built file holds them in this order.  README's Development section
# says what each is for.
LAYERS = (
    "state",
    "bytecode",
    "warm_server",
    "basics",
    "toml_files",
    "platform",
    "ignore",
    "discovery",
    "metadata",
    "imports",
    "graph",
    "handoff",
    "watching",
    "loop_guard",
    "intake",
    "order",
    "runners",
    "selection",
    "warm_client",
    "junit",
    "run",
    "stages",
    "warm_policy",
    "cycle",
    "ci",
    "report",
    "package_set",
    "options",
    "watch_mode",
    "session",
    "main",
)

# What the built file needs installed: its PEP 723 block, requirements.txt and README's install
# line say the same (tests/test_build.py checks that they do).
REQUIRES_PYTHON = ">=3.9"
DEPENDENCIES = (
    "watchdog>=6",
    "pynose>=1.5.5",
    'tomli>=1.1; python_version < "3.11"',
)
