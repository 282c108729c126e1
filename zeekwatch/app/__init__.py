"""App: the runners that put the layers together, one run at a time.

``analyze`` reads the inputs into the engine, runs the detectors, triages and stores the
findings in one run; ``follow`` tails live logs and does the same per micro-batch over a
bounded look-back. Owns the run lifecycle (run rows, progress hooks, checkpoints). May import
every layer below it (readers, detectors, engine, store, triage, core); never the CLI.
"""
