"""The ``cellseek`` command line: :mod:`~cellseek.cli.main` (the parser), the commands by kind
(:mod:`~cellseek.cli.cmd_images`, :mod:`~cellseek.cli.cmd_store`, :mod:`~cellseek.cli.cmd_measure`,
:mod:`~cellseek.cli.models` for ``cellseek models``, :mod:`~cellseek.cli.demo` for
``cellseek demo``), shared options (:mod:`~cellseek.cli.options`), image inputs
(:mod:`~cellseek.cli.images`) and terminal progress (:mod:`~cellseek.cli.progress`). Heavy
modules load after argument parsing.
"""
