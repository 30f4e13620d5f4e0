"""Policy checks for key hygiene: built-in rules of good practice for bring-your-own-key setups
(segmentation, hardware sources, algorithm strength, rotation, expiry, deletion protection,
material shared across clouds, keys lingering in deletion, material past its rotation) and
custom rules, configured by the `policy` block, run by validate, plan, drift and check.

`model` holds the data (the evaluated policy block, findings); `rules` the built-in rules;
`block` reads the HCL block; `engine` runs a policy; `report` renders findings as text, JSON
and SARIF. Only `model` is imported here, so the configuration model can hold a `Policy`.
"""

from keyplan.policy.model import Finding, FindingSeverity, Phase, Policy, Selector

__all__ = ["Finding", "FindingSeverity", "Phase", "Policy", "Selector"]
