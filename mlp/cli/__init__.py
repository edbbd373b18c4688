"""The commands: ``mlp-train`` (``train.py``), ``mlp-eval`` (``evaluate.py``), ``mlp-export``
(``export.py``), ``mlp-predict`` (``predict.py``) and the small tools ``python -m
mlp.cli.download`` and ``python -m mlp.cli.synthetic``. What they share (parser,
``--version``, argument types, one-line errors) is in ``common.py``; what a run shows and
leaves (progress bar, JSON-lines log, plot) in ``reporting.py``; a run's settings, fresh or
from a ``--resume`` checkpoint, in ``settings.py``. The library never imports these."""
