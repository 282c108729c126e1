"""CLI: the ``zeekwatch`` command, the only layer that imports click, prints or exits.

``main`` holds the group, ``analyze``, ``config`` and ``detectors`` and attaches the other
modules' ``COMMANDS`` (``triage``: findings, suppress, assets, tune; ``follow``); ``common``
has what they share (consoles, config loading, override flags). Library errors become
messages and exit codes here (zeekwatch.errors). May import every layer below it.
"""
