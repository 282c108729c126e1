"""Response playbooks: what to do about an incident, per threat type and tier.

The shipped defaults restate the source design's guidance (DESIGN.md "What the source design
says to do after detection"): tier 1 (urgency 1-3) watch, IT operations within 24 h; tier 2
(4-7) start at once, security team within 8 h; tier 3 (8-10) start at once, CIO/CISO within
2 h. First rule out a false alarm, then take the machine off the network without shutting it
down (memory is evidence), then look for the malware; bots, worms and unknown malware mean a
reinstall, a backdoor on a machine used outside means a reinstall, important machines mean
forensics by specialists.

A site writes its own in the config: ``[incidents.playbooks.<threat>]`` with ``tier1``,
``tier2`` and ``tier3`` texts (any left out keeps the default). ``zeekwatch incidents show``
prints the text for the incident's threat and tier; exports carry it.
"""

from __future__ import annotations

from zeekwatch.errors import ConfigError

CONFIRM = "Rule out a false alarm first: was the traffic intended, is an unusual application the cause?"
ISOLATE = ("Unplug the host from the network WITHOUT shutting it down (memory is evidence); "
           "keep the zeekwatch evidence (uids, pcaps, logs) of this incident.")
HUNT = "Look for the malware: full antivirus and anti-spyware scans, running processes, changed files and registry."
FORENSIC = ("Important machine or unknown malware: preserve the current state (memory and disk "
            "image) and have specialists do forensic analysis and an impact assessment.")

WATCH = "Keep watching the host; no action unless the incident grows."


def _tiers(t1: list[str], t2: list[str], t3: list[str]) -> dict[str, str]:
    def text(steps):
        return "\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1))
    return {"tier1": text(t1), "tier2": text(t2), "tier3": text(t3)}


def _infection(what: str, recovery: str, block: str, evidence: str) -> dict[str, str]:
    return _tiers(
        [f"IT operations, within 24 h: {WATCH}", f"Send the user a questionnaire about {what}.",
         CONFIRM],
        [f"Security team, start now, done within 8 h: {CONFIRM}", f"Phone the user; {block}",
         ISOLATE, HUNT, f"Keep: {evidence}.", recovery],
        [f"Notify the CIO/CISO now; done within 2 h. {block}", ISOLATE, f"Keep: {evidence}.",
         FORENSIC, recovery])


REINSTALL = "Recovery: reinstall the operating system (removing the program alone is often not enough)."
CLEAN = ("Recovery: well-known malware on an ordinary PC with a known infection path: clean with "
         "antivirus or the vendor's removal tool and restore; otherwise reinstall.")

DEFAULT_PLAYBOOKS: dict[str, dict[str, str]] = {
    "c2": _infection("the remote host it talks to",
                     REINSTALL + " Bots: find other hosts talking to the same C2 address.",
                     "block the C2 address and port at the firewall.",
                     "the peer addresses, DNS names and connection uids"),
    "backdoor": _infection("the new listening service",
                           REINSTALL + " A backdoor on a PC used on outside networks: always reinstall.",
                           "block inbound connections to the listening port.",
                           "the listening port, who connected to it and when"),
    "worm": _infection("the scanning the host did",
                       REINSTALL + " Check the scanned hosts for infection.",
                       "block the scanned port(s) for the host at the firewall.",
                       "the scanned port and target list"),
    "mass_mailer": _infection("mail sent from the machine",
                              CLEAN,
                              "block tcp/25 for the host at the firewall.",
                              "a sample of the mail queue and the SMTP servers contacted"),
    "tunnel": _infection("the long connection",
                         CLEAN,
                         "block the peer at the firewall.",
                         "the connection span, bytes and peer"),
    "exfiltration": _infection("the data transferred",
                               REINSTALL + " Assess what data left (impact assessment).",
                               "block the destination at the firewall.",
                               "byte counts, destinations and the data owner's name"),
    "ids": _infection("the alerted traffic", CLEAN,
                      "block the alerted peer if the signature is credible.",
                      "the alerts (signatures, sids, peers) and the rule version"),
    "suspicious": _infection("the unusual application or destination", CLEAN,
                             "block the destination if no owner claims it.",
                             "the ports, destinations and DNS names"),
    "recon": _tiers([f"IT operations, within 24 h: {WATCH}", CONFIRM],
                    ["Security team, within 8 h: find who ran the reconnaissance and why.",
                     CONFIRM, HUNT],
                    ["Notify the CIO/CISO now.", ISOLATE, HUNT, FORENSIC]),
    "policy": _tiers([f"IT operations, within 24 h: {WATCH}",
                      "Remind the user of the usage policy."],
                     ["Security team, within 8 h: phone the user about the policy violation.", CONFIRM],
                     ["Notify the CIO/CISO now.", CONFIRM, ISOLATE]),
    "anomaly": _tiers([f"IT operations, within 24 h: {WATCH}", CONFIRM],
                      ["Security team, within 8 h: investigate remotely.", CONFIRM, HUNT],
                      ["Notify the CIO/CISO now.", ISOLATE, HUNT, FORENSIC]),
    "inbound": _tiers(
        ["IT operations, within 24 h: the host is a target, not (yet) infected. Check it is "
         "patched and that the scanned services should be reachable from outside.",
         "Consider blocking the sources at the edge if they persist."],
        ["Security team, within 8 h: check the target's logs for the attempts; block the "
         "sources at the edge.", "Close or restrict the exposed service."],
        ["Notify the CIO/CISO now: an important target is under attack.",
         "Block the sources at the edge; check the target's logs.", FORENSIC]),
    "inbound_answered": _tiers(
        ["IT operations, within 24 h: the target answered an attack. Check it is patched and "
         "that the service should be exposed."],
        ["Security team, within 8 h: the target answered an attack. Check its logs for a "
         "successful exploit; block the sources at the edge.", HUNT,
         "If compromised: " + REINSTALL],
        ["Notify the CIO/CISO now: an important target answered an attack.", ISOLATE, HUNT,
         FORENSIC]),
}
FALLBACK = "anomaly"


def load(config_playbooks: dict | None) -> dict[str, dict[str, str]]:
    """The defaults overlaid with the config's ``incidents.playbooks``."""
    books = {k: dict(v) for k, v in DEFAULT_PLAYBOOKS.items()}
    for threat, tiers in (config_playbooks or {}).items():
        if not isinstance(tiers, dict) or set(tiers) - {"tier1", "tier2", "tier3"} \
                or not all(isinstance(v, str) and v.strip() for v in tiers.values()):
            raise ConfigError(f"incidents.playbooks.{threat}: a table with tier1, tier2 and/or "
                              "tier3 texts")
        books.setdefault(threat, dict(DEFAULT_PLAYBOOKS[FALLBACK])).update(tiers)
    return books


def text_for(books: dict[str, dict[str, str]], threat: str, tier: int) -> str:
    book = books.get(threat) or books[FALLBACK]
    return book[f"tier{tier}"]
