# keyplan for a regulated setup: one key per application and environment, production material
# generated and wrapped inside an HSM, rotation every 90 days, material that expires where the
# cloud supports it, production keys protected from deletion, and a policy block that makes
# these rules errors (keyplan plan refuses to plan while one is broken) and records the one
# exception the auditors agreed to, with its reason and end date.
#
# `keyplan check` and `keyplan validate` run offline, without the HSM or a cloud. Planning and
# applying need the token (see examples/hsm for a SoftHSM2 development token).

keyplan {
  state "local" {
    path = "keyplan.kpstate.json"
  }
}

variable "environments" {
  type    = list(string)
  default = ["prod", "staging"]
}

locals {
  applications = toset(["payments", "ledger"])
  pairs = {
    for p in setproduct(local.applications, var.environments) :
    "${p[0]}-${p[1]}" => { app = p[0], env = p[1] }
  }
}

# Production material: generated and wrapped inside the token; the PIN comes from the environment.
source "pkcs11" "hsm" {
  module      = "/usr/lib/softhsm/libsofthsm2.so"
  token_label = "keyplan-prod"
  pin_env     = "KEYPLAN_HSM_PIN"
}

# Everything else: the encrypted software keystore.
source "software" "nonprod" {
  keystore = ".keyplan/keystore.json"
}

provider "aws" "main" {
  region   = "eu-west-1"
  endpoint = "embedded"
}

provider "gcp" "main" {
  project  = "contoso-keys"
  location = "europe-west1"
  key_ring = "keyplan"
  endpoint = "embedded"
}

# The data keys: one per application and environment.
key "data" {
  for_each    = local.pairs
  algorithm   = "AES_256"
  source      = each.value.env == "prod" ? source.pkcs11.hsm : source.software.nonprod
  targets     = [provider.aws.main]
  labels      = { app = each.value.app, env = each.value.env, owner = "payments-platform" }
  description = "Data key for ${each.value.app} in ${each.value.env}"

  rotation {
    every = "90d"
  }
  expiry {
    after = "180d"
  }
  lifecycle {
    prevent_destroy = true
  }
}

# Signing key for payment receipts: asymmetric, so verifiers hold only the public key. The same
# material in two clouds is deliberate (the receipts are verified in both), and says so.
key "receipts" {
  algorithm = "EC_P256"
  usage     = "sign"
  source    = source.pkcs11.hsm
  targets   = [provider.aws.main, provider.gcp.main]
  labels    = { app = "payments", env = "prod", owner = "payments-platform", multicloud = "true" }

  lifecycle {
    prevent_destroy = true
  }
}

policy {
  rule "labels" {
    severity = "error"
    required = ["app", "env", "owner"]
  }
  rule "rotation" {
    severity = "error"
    max_days = 90
  }
  rule "expiry" {
    severity = "error"
    max_days = 180
  }
  rule "algorithm-strength" {
    min_rsa_bits = 3072
  }
  rule "hardware-source" {
    scope {
      labels = { env = "prod" }
    }
  }
  rule "prevent-destroy" {
    scope {
      labels = { env = ["prod", "staging"] }
    }
  }
  rule "material-age" {
    grace_days = 7
  }

  # The receipts key's material does not expire: its verifiers pin the public key, so it is
  # replaced by hand at each audit cycle. Agreed until the next audit, then reviewed again.
  exception "expiry" {
    scope {
      addresses = ["key.receipts"]
    }
    reason  = "receipt verifiers pin the public key; replaced by hand at each audit cycle"
    expires = "2027-06-30"
  }

  # A house rule no built-in covers: production keys name their owning team.
  custom "prod-owner" {
    condition = lookup(key.labels, "env", "") != "prod" || lookup(key.labels, "owner", "") != ""
    message   = "A production key names the team that owns it in its owner label."
    severity  = "error"
  }
}
