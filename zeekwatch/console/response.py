"""The response steps a finding's page shows, by behaviour family (DESIGN.md "Response")."""

from __future__ import annotations

from zeekwatch.console.panels import family

CHECK = ("Rule out a false alarm first: was the traffic intended? Is an unusual application "
         "the cause (see the host's app usage)? Was it a vulnerability scan?")
ISOLATE = ("Take the PC off the network by unplugging it, without shutting it down "
           "(its memory is evidence).")
LOOK = ("Look for the malware: a full antivirus scan, an anti-spyware scan, the running "
        "processes, traces of tampering with files and the registry.")
DEEP = ("Unknown malware, an unknown infection path, bot-type software, an important server or "
        "the PC of someone handling important information: preserve the current state and have "
        "specialists do a forensic analysis.")

STEPS = {
    "worm/scan": [CHECK, ISOLATE, LOOK, DEEP,
                  "Recovery: worms and unknown malware mean reinstalling the operating system "
                  "(removing the program alone is often not enough)."],
    "mass mailer": [CHECK, ISOLATE, LOOK, DEEP,
                    "Recovery: bots and worms mean reinstalling the operating system; tell the "
                    "mail administrators (the host may be on block lists)."],
    "C2/backdoor": [CHECK, ISOLATE, LOOK, DEEP,
                    "Recovery: a bot or a backdoor on a PC used on outside networks after the "
                    "infection means reinstalling the operating system (someone may have come "
                    "in through it)."],
    "IDS": [CHECK, "Read the signature and the matching traffic; if the alert is confirmed, "
            "follow the steps of the behaviour it names.", LOOK],
    "other": [CHECK, "Compare with the host's usual traffic; if it is not explained, treat it "
              "as a possible infection.", LOOK],
}
SERVER_CLASSES = {"vip_client", "server", "confidential_server", "core_server"}


def steps_for(threat: str | None, asset_class: str | None) -> list[str]:
    steps = list(STEPS[family(threat)])
    if asset_class in SERVER_CLASSES:
        steps.insert(1, f"The host is a {asset_class.replace('_', ' ')}: involve its owner "
                        "before unplugging it.")
    return steps
