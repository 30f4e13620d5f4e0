source "software" "main" { keystore = ".keyplan/keystore.json" }
provider "aws" "main" {
  region   = "us-east-1"
  endpoint = "embedded"
}
key "owned" {
  algorithm = "AES_256"
  source    = source.software.main
  targets   = [provider.aws.main]
  labels = { owner = "team-a" }
}
key "orphan" {
  algorithm = "AES_256"
  source    = source.software.main
  targets   = [provider.aws.main]
}
policy {
  builtin = "listed"
  custom "owner" {
    condition = lookup(key.labels, "owner", "") != "" && key.rotation_days == null
    message   = "Every key names the team that owns it."
    severity  = "warning"
  }
}
