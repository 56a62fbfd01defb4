"""The top layer: the ``sgv`` command line (``main``, ``commands/``) and what orchestrates several layers (the demo,
``experiment``). It calls the typed APIs of ``sgverbalise``, ``sgverbalise.pipelines`` and ``sgverbalise.training``;
nothing below imports it."""
