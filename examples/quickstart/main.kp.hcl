# keyplan quickstart: one AES-256 key per application and environment, generated in a local
# encrypted keystore and imported (wrapped) into AWS KMS. The AWS endpoint is keyplan's
# embedded emulator, so this runs on a laptop with nothing but Python.

variable "environments" {
  type        = list(string)
  default     = ["dev", "prod"]
  description = "Environments that each get their own key."
}

locals {
  applications = ["payments", "ledger"]

  # one entry per application x environment: "payments-dev" => { app = "payments", env = "dev" }
  keys = {
    for pair in setproduct(local.applications, var.environments) :
    "${pair[0]}-${pair[1]}" => { app = pair[0], env = pair[1] }
  }
}

keyplan {
  state "local" {
    path = "keyplan.kpstate.json"
  }
}

source "software" "local" {
  keystore = ".keyplan/keystore.json"
}

provider "aws" "main" {
  region   = "eu-west-1"
  endpoint = "embedded"
}

key "data" {
  for_each    = local.keys
  algorithm   = "AES_256"
  source      = source.software.local
  targets     = [provider.aws.main]
  description = "Data key for ${each.value.app} in ${each.value.env}"
  aliases     = ["alias/${each.value.app}/${each.value.env}"]
  labels = {
    app         = each.value.app
    environment = each.value.env
  }

  expiry {
    after = "365d"
  }

  rotation {
    every = "90d"
  }

  lifecycle {
    prevent_destroy = false
  }
}
