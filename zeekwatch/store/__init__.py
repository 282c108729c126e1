"""Store: the SQLite database of findings (WAL mode, sqlite-utils), the only layer that
writes it.

``db.Store`` creates and migrates the schema and writes runs, rejects, findings and their
evidence; ``triage.TriageStore`` is the analysts' side (status changes with audit rows,
suppression rules, assets); ``follow.FollowStore`` adds follow's checkpoints. Imports only
the core modules.
"""
