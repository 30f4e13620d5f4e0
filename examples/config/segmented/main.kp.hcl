# One data key per application and environment, imported into AWS KMS.
keyplan {
  state "local" { path = "keyplan.kpstate.json" }
}

variable "environments" {
  type        = list(string)
  default     = ["dev", "prod"]
  description = "Environments every application runs in."
}

variable "extra_labels" {
  type    = map(string)
  default = { team = "platform" }
}

locals {
  apps  = toset(["payments", "ledger"])
  pairs = { for p in setproduct(local.apps, var.environments) : "${p[0]}-${p[1]}" => { app = p[0], env = p[1] } }
}

source "software" "main" {
  keystore = ".keyplan/keystore.json"
}

provider "aws" "main" {
  region   = "us-east-1"
  endpoint = "embedded"
}

key "app" {
  for_each    = local.pairs
  algorithm   = "AES_256"
  usage       = "encrypt"
  source      = source.software.main
  targets     = [provider.aws.main]
  labels      = merge({ app = each.value.app, env = each.value.env }, var.extra_labels)
  description = "Data key for ${each.value.app} in ${each.value.env}"
  aliases     = ["alias/${each.key}"]
  enabled     = true

  expiry { after = "365d" }
  rotation { every = "90d" }
  lifecycle { prevent_destroy = true }
}
