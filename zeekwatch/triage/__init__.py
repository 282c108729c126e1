"""Triage: what happens to a detector's candidate before an analyst sees it.

``appusage`` finds P2P, instant-messaging and VoIP use (the look-alikes), ``suppress``
applies look-alike and allowlist rules (keeping every suppressed finding with its reason),
``score`` maps threat x asset class to urgency, tier and deadline, ``stage`` merges
candidates into findings and stores them, ``tune`` turns verdicts into sensor config.
May import store, engine, detectors, readers and the core; never app or cli.
"""
