"""The ``cellseek`` command line: :mod:`~cellseek.cli.main` (parser and commands),
:mod:`~cellseek.cli.progress` (terminal progress), :mod:`~cellseek.cli.models` (``cellseek models``)
and :mod:`~cellseek.cli.demo` (``cellseek demo``). Heavy modules load after argument parsing.
"""
