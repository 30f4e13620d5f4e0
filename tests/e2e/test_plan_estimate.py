"""A plan whose work takes a while under the clouds' request quotas names the quota that bounds
it and about how long it needs; small plans say nothing of it."""

from __future__ import annotations

import json

from tests.e2e.conftest import Workspace

CONFIG = """
source "software" "local" {{}}

provider "aws" "main" {{
  region = "eu-west-1"
}}

provider "aws" "raised" {{
  region      = "eu-west-2"
  rate_limits = {{ CreateKey = 50, GetParametersForImport = 50, ImportKeyMaterial = 50 }}
}}

key "data" {{
  for_each  = toset([for i in range({n}) : "k${{i}}"])
  algorithm = "AES_256"
  source    = source.software.local
  targets   = [provider.aws.main, provider.aws.raised]
}}
"""


def test_a_long_plan_names_the_quota_that_bounds_it(workspace: Workspace) -> None:
    workspace.write(CONFIG.format(n=300))
    planned = workspace.keyplan("plan", "-refresh=false")
    assert planned.code == 0, planned.output
    # 300 CreateKey calls at the documented 5/s; the raised block allows ten times that.
    assert "Estimated time: about 1 min 0 s" not in planned.stdout
    assert "Estimated time: about 1 min: aws.main allows CreateKey 5/s (300 calls)." in planned.stdout

    as_json = json.loads(workspace.keyplan("plan", "-refresh=false", "-json").stdout)
    assert as_json["estimate"] == {
        "seconds": 60.0, "target": "aws.main", "rate_class": "CreateKey", "per_second": 5.0, "calls": 300,
    }  # fmt: skip


def test_a_short_plan_gives_no_estimate(workspace: Workspace) -> None:
    workspace.write(CONFIG.format(n=20))
    planned = workspace.keyplan("plan", "-refresh=false")
    assert planned.code == 0, planned.output
    assert "Estimated time" not in planned.stdout
    assert json.loads(workspace.keyplan("plan", "-refresh=false", "-json").stdout)["estimate"] is None


def test_a_huge_change_set_is_summarised_by_key_block_and_listed_in_full_by_show(workspace: Workspace) -> None:
    workspace.write(CONFIG.format(n=150))  # two targets: 300 changes
    planned = workspace.keyplan("plan", "-refresh=false", "-out", "big.plan")
    assert planned.code == 0, planned.output
    assert "+ key.data @ aws.main: 150 to create" in planned.stdout
    assert "+ key.data @ aws.raised: 150 to create" in planned.stdout
    assert "will be created" not in planned.stdout  # no per-change sections
    shown = workspace.keyplan("show", "big.plan")
    assert shown.code == 0, shown.output
    assert shown.stdout.count("will be created") == 300
    as_json = json.loads(workspace.keyplan("plan", "-refresh=false", "-json").stdout)
    assert len(as_json["changes"]) == 300


EMBEDDED = """
source "software" "local" {{}}

provider "aws" "main" {{
  region   = "eu-west-1"
  endpoint = "embedded"
  {limits}
}}

key "data" {{
  for_each  = toset([for i in range(300) : "k${{i}}"])
  algorithm = "AES_256"
  source    = source.software.local
  targets   = [provider.aws.main]
}}
"""


def test_an_endpoint_whose_limits_keyplan_does_not_know_gets_no_estimate_from_the_clouds_quotas(
    workspace: Workspace,
) -> None:
    # Against its own `endpoint` keyplan paces only the classes named in rate_limits (the
    # emulator or private peer has its own limits, or none): the cloud's 5/s bounds nothing there.
    workspace.write(EMBEDDED.format(limits=""))
    planned = workspace.keyplan("plan")
    assert planned.code == 0, planned.output
    assert "Estimated time" not in planned.stdout
    assert json.loads(workspace.keyplan("plan", "-json").stdout)["estimate"] is None

    workspace.write(EMBEDDED.format(limits="rate_limits = { CreateKey = 2 }"))
    planned = workspace.keyplan("plan")
    assert planned.code == 0, planned.output
    assert "Estimated time: about 2 min 30 s: aws.main allows CreateKey 2/s (300 calls)." in planned.stdout


def test_a_huge_change_set_in_markdown_fits_a_review_comment(workspace: Workspace) -> None:
    # A review comment holds at most 65,536 characters (GitHub's limit): the Markdown of a huge
    # plan is a summary by key block, target and action, pointing at where every change is.
    workspace.write(CONFIG.format(n=150))  # two targets: 300 changes
    assert workspace.keyplan("plan", "-refresh=false", "-out", "big.plan").code == 0
    shown = workspace.keyplan("show", "-markdown", "big.plan")
    assert shown.code == 0, shown.output
    assert len(shown.stdout) < 65_536
    assert "| + | <code>key.data</code> | <code>aws.main</code> | create | 150 |" in shown.stdout
    assert "| + | <code>key.data</code> | <code>aws.raised</code> | create | 150 |" in shown.stdout
    assert "keyplan show" in shown.stdout and "<details>" not in shown.stdout

    workspace.write(CONFIG.format(n=40))  # 80 changes: every one in the table, no detail sections
    assert workspace.keyplan("plan", "-refresh=false", "-out", "mid.plan").code == 0
    shown = workspace.keyplan("show", "-markdown", "mid.plan")
    assert shown.stdout.count('<code>key.data["k') == 80 and "<details>" not in shown.stdout
    assert len(shown.stdout) < 65_536


def test_drift_of_a_huge_set_in_markdown_is_counted_by_key_block(workspace: Workspace) -> None:
    workspace.write(EMBEDDED.format(limits="consistency_window_seconds = 0").replace("range(300)", "range(210)"))
    assert workspace.keyplan("apply", "-auto-approve").code == 0
    (workspace.path / ".keyplan" / "emulators" / "aws-main.sqlite").unlink()  # every key gone behind keyplan's back
    planned = workspace.keyplan("plan", "-refresh-only", "-out", "drift.plan")
    assert planned.code == 0, planned.output
    shown = workspace.keyplan("show", "-markdown", "drift.plan")
    assert shown.code == 0, shown.output
    assert "| <code>key.data</code> | <code>aws.main</code> | deleted | 210 |" in shown.stdout
    assert '<code>key.data["k' not in shown.stdout


ALIASED = """
source "software" "local" {{}}

provider "aws" "main" {{
  region      = "eu-west-1"
  endpoint    = "embedded"
  rate_limits = {{ CreateKey = 50, GetParametersForImport = 50, ImportKeyMaterial = 50, CreateAlias = {alias_rate} }}
}}

key "data" {{
  for_each  = toset([for i in range(100) : "k${{i}}"])
  algorithm = "AES_256"
  source    = source.software.local
  targets   = [provider.aws.main]
  aliases   = ["alias/${{each.key}}", "alias/${{each.key}}-2"]
  labels    = {{ team = "{team}" }}
}}
"""


def test_the_estimate_counts_one_call_per_alias_to_create(workspace: Workspace) -> None:
    # 100 new keys with two aliases each: 200 CreateAlias calls at 5/s bound the apply.
    workspace.write(ALIASED.format(alias_rate=5, team="a"))
    planned = workspace.keyplan("plan")
    assert planned.code == 0, planned.output
    assert "Estimated time: about 40 s: aws.main allows CreateAlias 5/s (200 calls)." in planned.stdout

    # Once they exist, a label change creates no alias: nothing bounds it long enough to say.
    workspace.write(ALIASED.format(alias_rate=100, team="a"))
    assert workspace.keyplan("apply", "-auto-approve").code == 0
    workspace.write(ALIASED.format(alias_rate=1, team="b"))
    relabelled = workspace.keyplan("plan")
    assert relabelled.code == 0, relabelled.output
    assert "100 to update" in relabelled.stdout and "Estimated time" not in relabelled.stdout
